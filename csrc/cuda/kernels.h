// Interface between the CUDA kernels (the .cu files here: plain CUDA, no
// torch headers, so nvcc's per-arch device passes stay fast) and the host
// side (launch.cpp, cuda_host.cpp).
#pragma once

#include "../problem.h"
#include "plan.h"

#include <cuda_runtime.h>

#include <cstdint>

namespace vllm_moe_align {

// Per regime (tiny.cu, spread.cu, tiled.cu): launch_* enqueues the regime's
// kernels for `plan` on `stream`, for a validated problem (checks.h) on
// buffers whose ids are int32 or int64, and returns the first launch error;
// preload_* loads the regime's kernels on the current device.
cudaError_t launch_tiny(const AlignProblem& p, const AlignBuffers& b, const LaunchPlan& plan,
                        int device, int smem_optin_bytes, cudaStream_t stream);
cudaError_t launch_spread(const AlignProblem& p, const AlignBuffers& b, const LaunchPlan& plan,
                          int device, int smem_optin_bytes, cudaStream_t stream);
cudaError_t launch_tiled(const AlignProblem& p, const AlignBuffers& b, const LaunchPlan& plan,
                         int device, int smem_optin_bytes, cudaStream_t stream);
// fused_globalize_align_block_size_out's inputs beyond the align problem:
// the ids (recv_topk_idx, rewritten in place), psum_recv_per_rank's last
// entry (rows received, read on the device), and the globalize step's sizes.
struct GlobalizeArgs {
  int64_t* ids;
  const int32_t* psum_last;
  int topk;
  int local_experts;
  long long rank_offset;
  long long global_experts;
};

// The tiled kernels of `plan` (a tiled regime) for a globalize call whose
// align problem is `p` (align_problem_of), globalizing as they go (tiled.cu):
// every output of b, and g.ids rewritten in place.
cudaError_t launch_tiled_globalize(const AlignProblem& p, const AlignBuffers& b,
                                   const LaunchPlan& plan, const GlobalizeArgs& g, int device,
                                   int smem_optin_bytes, cudaStream_t stream);
cudaError_t preload_tiny();
cudaError_t preload_spread();
cudaError_t preload_tiled();

// globalize.cu, fused_globalize_align_block_size_out for a validated problem
// and its plan (plan_globalize): launch_globalize_fused writes every output
// and rewrites b.ids in place in one launch (plan.fused); launch_globalize
// is the pass before the tiny or spread kernels: it writes each route's bin
// (local id, or -1 when it is dropped) to `bins` (numel ints) and rewrites
// b.ids in place, and the align kernels then run on `bins` (no launch for
// numel == 0).
cudaError_t launch_globalize_fused(const GlobalizeProblem& p, const GlobalizeBuffers& b,
                                   const GlobalizePlan& plan, int device, cudaStream_t stream);
cudaError_t launch_globalize(const GlobalizeProblem& p, const GlobalizeBuffers& b, int32_t* bins,
                             const GlobalizePlan& plan, int device, cudaStream_t stream);
cudaError_t preload_globalize();

// Whether the kernels launch on `device` as programmatic dependent launches
// (common.cuh, launch_kernel): set_dependent_launch turned them on and the
// GPU has compute capability 9.0 or newer (launch.cpp).
bool dependent_launch(int device);

// Enqueues the kernels of `plan` on `stream`; returns the first launch error.
inline cudaError_t launch_align(const AlignProblem& p, const AlignBuffers& b,
                                const LaunchPlan& plan, int device, int smem_optin_bytes,
                                cudaStream_t stream) {
  switch (plan.regime) {
    case Regime::kTiny:
      return launch_tiny(p, b, plan, device, smem_optin_bytes, stream);
    case Regime::kSpread:
      return launch_spread(p, b, plan, device, smem_optin_bytes, stream);
    default:
      return launch_tiled(p, b, plan, device, smem_optin_bytes, stream);
  }
}

// Loads every kernel of this library on the current device. CUDA loads
// kernels lazily, on first use, and that first load costs far more than a
// launch; preloading moves it out of the first call. Queries only: no launch,
// no allocation.
inline cudaError_t preload_kernels() {
  cudaError_t err = preload_tiny();
  if (err == cudaSuccess) err = preload_spread();
  if (err == cudaSuccess) err = preload_tiled();
  if (err == cudaSuccess) err = preload_globalize();
  return err;
}

}  // namespace vllm_moe_align
