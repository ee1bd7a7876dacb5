// Interface between the CUDA kernels (the .cu files here: plain CUDA, no
// torch headers, so nvcc's per-arch device passes stay fast) and the host
// side (launch.cpp, cuda_host.cpp).
#pragma once

#include "../problem.h"
#include "plan.h"

#include <cuda_runtime.h>

#include <cstdint>

namespace vllm_moe_align {

// Per regime (tiny.cuh, spread.cuh, tiled.cuh) and id type: launch_<regime>_<type>
// enqueues the regime's kernels for `plan` on `stream`, for a validated
// problem (checks.h) on buffers whose ids have that type, and returns the
// first launch error; preload_<regime>_<type> loads those kernels on the
// current device. Each regime and id type is a source file and so a CUDA
// module of its own (<regime>_int32.cu, <regime>_int64.cu): CUDA loads a
// module whole at the first launch of any of its kernels, at a cost that
// grows with the module's size, so a process's first call loads only the
// kernels it runs.
cudaError_t launch_tiny_int32(const AlignProblem& p, const AlignBuffers& b,
                              const LaunchPlan& plan, int device, int smem_optin_bytes,
                              cudaStream_t stream);
cudaError_t launch_tiny_int64(const AlignProblem& p, const AlignBuffers& b,
                              const LaunchPlan& plan, int device, int smem_optin_bytes,
                              cudaStream_t stream);
cudaError_t launch_spread_int32(const AlignProblem& p, const AlignBuffers& b,
                                const LaunchPlan& plan, int device, int smem_optin_bytes,
                                cudaStream_t stream);
cudaError_t launch_spread_int64(const AlignProblem& p, const AlignBuffers& b,
                                const LaunchPlan& plan, int device, int smem_optin_bytes,
                                cudaStream_t stream);
cudaError_t launch_tiled_int32(const AlignProblem& p, const AlignBuffers& b,
                               const LaunchPlan& plan, int device, int smem_optin_bytes,
                               cudaStream_t stream);
cudaError_t launch_tiled_int64(const AlignProblem& p, const AlignBuffers& b,
                               const LaunchPlan& plan, int device, int smem_optin_bytes,
                               cudaStream_t stream);
cudaError_t preload_tiny_int32();
cudaError_t preload_tiny_int64();
cudaError_t preload_spread_int32();
cudaError_t preload_spread_int64();
cudaError_t preload_tiled_int32();
cudaError_t preload_tiled_int64();

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
// align problem is `p` (align_problem_of), globalizing as they go
// (tiled_globalize.cu): every output of b, and g.ids rewritten in place.
cudaError_t launch_tiled_globalize(const AlignProblem& p, const AlignBuffers& b,
                                   const LaunchPlan& plan, const GlobalizeArgs& g, int device,
                                   int smem_optin_bytes, cudaStream_t stream);
cudaError_t preload_tiled_globalize();

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
  const bool wide = b.ids_dtype == kInt64;
  switch (plan.regime) {
    case Regime::kTiny:
      return (wide ? launch_tiny_int64 : launch_tiny_int32)(p, b, plan, device, smem_optin_bytes,
                                                            stream);
    case Regime::kSpread:
      return (wide ? launch_spread_int64 : launch_spread_int32)(p, b, plan, device,
                                                                smem_optin_bytes, stream);
    default:
      return (wide ? launch_tiled_int64 : launch_tiled_int32)(p, b, plan, device,
                                                              smem_optin_bytes, stream);
  }
}

// Loads every kernel of this library on the current device. CUDA loads
// kernels lazily, on first use, and that first load costs far more than a
// launch; preloading moves it out of the first call. Queries only: no launch,
// no allocation.
inline cudaError_t preload_kernels() {
  cudaError_t (*const preloads[])() = {preload_tiny_int32,   preload_tiny_int64,
                                       preload_spread_int32, preload_spread_int64,
                                       preload_tiled_int32,  preload_tiled_int64,
                                       preload_tiled_globalize, preload_globalize};
  for (auto preload : preloads) {
    const cudaError_t err = preload();
    if (err != cudaSuccess) return err;
  }
  return cudaSuccess;
}

}  // namespace vllm_moe_align
