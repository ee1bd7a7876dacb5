// Host side of the CUDA backend, torch-free: the GPU's limits, the device
// guard, and one call's plan and launch. The frontends (frontend/*.cpp,
// through ../ops.h) validate, allocate and hand over the pointers and the
// stream; the kernels are in tiny.cuh, spread.cuh and tiled.cuh (kernels.h).
#pragma once

#include "../checks.h"
#include "kernels.h"

#include <cuda_runtime.h>

namespace vllm_moe_align {

// What plan_launch needs to know of a GPU.
struct DeviceLimits {
  int num_sms;
  int smem_optin_bytes;  // shared memory a block may opt into
};

// The limits of `device`, read from the driver once per device and cached.
DeviceLimits device_limits(int device);

// Makes `device` current for its lifetime (cudaSetDevice only when it is not
// already), then restores the previous one.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

// Turns programmatic dependent launch of the kernels on or off for the
// whole process (dependent_launch in kernels.h: on GPUs of compute
// capability 9.0 and newer only); dependent_launch_asked says which. A
// launch reads it when it is enqueued, so a CUDA graph keeps the setting in
// force at its capture.
void set_dependent_launch(bool enabled);
bool dependent_launch_asked();

// RuntimeError naming the CUDA error, unless err is cudaSuccess.
void check_cuda(cudaError_t err);

// The plan of one validated call on a GPU with `limits` (ValueError when
// num_experts needs more shared memory than the GPU offers per block).
LaunchPlan plan_call(const AlignProblem& p, const DeviceLimits& limits);

// Enqueues the kernels of `plan` for the validated problem `p` on buffers `b`
// on `stream`; RuntimeError on a launch error.
void launch_call(const AlignProblem& p, const AlignBuffers& b, const LaunchPlan& plan,
                 int device, const DeviceLimits& limits, cudaStream_t stream);

// The plan of one validated fused_globalize_align_block_size_out call on a
// GPU with `limits` (ValueError as plan_call's).
GlobalizePlan plan_globalize_call(const GlobalizeProblem& p, const DeviceLimits& limits);

// Whether `plan` needs the bins buffer (numel ints) of the globalize pass.
inline bool globalize_needs_bins(const GlobalizePlan& plan) { return !plan.fused && !plan.folded; }

// Enqueues the kernels of `plan` for the validated globalize problem `p` on
// buffers `b` on `stream`: the fused launch; or the tiled kernels that
// globalize as they go; or the pass that writes `bins`, then the align
// kernels on them. `bins` (globalize_needs_bins) and `scratch`
// (plan.align.scratch_ints ints) may be null when the plan needs none.
// RuntimeError on a launch error.
void launch_globalize_call(const GlobalizeProblem& p, const GlobalizeBuffers& b,
                           const GlobalizePlan& plan, int32_t* bins, int32_t* scratch, int device,
                           const DeviceLimits& limits, cudaStream_t stream);

}  // namespace vllm_moe_align
