// Interface between the CUDA kernels (moe_align_kernels.cu, plain CUDA: no
// torch headers, so nvcc's per-arch device passes stay fast) and the torch
// binding (moe_align_cuda.cpp).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
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

enum class Regime { kTiny, kSpread, kTiledPrefixHere, kTiledScan };

// Kernels launch_align enqueues for a regime (tiny, spread: one; tiled: count
// and scatter, plus the scan kernel for kTiledScan).
constexpr int kernel_launches(Regime r) {
  return r == Regime::kTiledScan ? 3 : r == Regime::kTiledPrefixHere ? 2 : 1;
}

// The launch sizes of one call: chosen by plan_launch, the one place where
// they are decided.
struct LaunchPlan {
  Regime regime;
  int num_tiles;        // CTAs of the tiny, spread and tiled kernels
  int tile_routes;      // routes a CTA owns (spread: 32, 64 or 128)
  int hist_warps;
  int threads;          // per CTA, sized to the input
  size_t smem_bytes;    // dynamic shared memory of the spread/scatter kernel
  size_t scratch_ints;  // device scratch the caller allocates (uninitialised)
  bool fits;            // false: num_experts too large for this GPU's smem
};

LaunchPlan plan_launch(int numel, int num_experts, int block_size, int sorted_size, bool map_in,
                       int num_sms, int smem_optin_bytes);

// Loads every kernel of this library on the current device (CUDA loads
// modules lazily: the first launch of the first kernel cost ~1 ms on the H100,
// later first launches ~0.1 ms). Queries only: no launch, no allocation.
cudaError_t preload_kernels();

// Enqueues the kernels of `plan` on `stream`; returns the first launch error.
cudaError_t launch_align(const KernelParams& p, const LaunchPlan& plan, int device,
                         int smem_optin_bytes, cudaStream_t stream);

}  // namespace vllm_moe_align
