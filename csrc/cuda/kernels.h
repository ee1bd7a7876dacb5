// Interface between the CUDA kernels (the .cu files here: plain CUDA, no
// torch headers, so nvcc's per-arch device passes stay fast) and the host
// side (launch.cpp, ../cuda_host.cpp).
#pragma once

#include "plan.h"

#include <cuda_runtime.h>

#include <cstdint>

namespace vllm_moe_align {

// One call's device pointers and sizes, after validation.
struct KernelParams {
  const void* ids;     // int32 or int64 routes, contiguous
  bool ids_int64;
  const int32_t* map;  // expert_map or nullptr
  int32_t* sorted_ids;
  int32_t* expert_ids;
  int32_t* post_pad;
  int32_t* scatter_idx;  // or nullptr
  int32_t* scratch;      // LaunchPlan::scratch_ints ints, or nullptr if 0
  int numel;
  int num_experts;
  int block_size;
  int sorted_size;
  int expert_ids_size;
  int expert_ids_tail;  // before output mapping
  bool map_in;          // map ids while counting (drop -1)
  bool map_out;         // expert_ids = expert_map[expert_ids]
};

// Per regime (tiny.cu, spread.cu, tiled.cu): launch_* enqueues the regime's
// kernels for `plan` on `stream` and returns the first launch error;
// preload_* loads the regime's kernels on the current device.
cudaError_t launch_tiny(const KernelParams& p, const LaunchPlan& plan, int device,
                        int smem_optin_bytes, cudaStream_t stream);
cudaError_t launch_spread(const KernelParams& p, const LaunchPlan& plan, int device,
                          int smem_optin_bytes, cudaStream_t stream);
cudaError_t launch_tiled(const KernelParams& p, const LaunchPlan& plan, int device,
                         int smem_optin_bytes, cudaStream_t stream);
cudaError_t preload_tiny();
cudaError_t preload_spread();
cudaError_t preload_tiled();

// Enqueues the kernels of `plan` on `stream`; returns the first launch error.
inline cudaError_t launch_align(const KernelParams& p, const LaunchPlan& plan, int device,
                                int smem_optin_bytes, cudaStream_t stream) {
  switch (plan.regime) {
    case Regime::kTiny:
      return launch_tiny(p, plan, device, smem_optin_bytes, stream);
    case Regime::kSpread:
      return launch_spread(p, plan, device, smem_optin_bytes, stream);
    default:
      return launch_tiled(p, plan, device, smem_optin_bytes, stream);
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
  return err;
}

}  // namespace vllm_moe_align
