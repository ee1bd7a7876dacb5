// The CUDA backend's launch plan: what plan_launch (plan.cpp, the one place
// launch sizes are chosen) decides for one call, and the sizes the planner
// and the kernels must agree on. Plain C++: included by host code and by the
// kernels.
#pragma once

#include <cstddef>

namespace vllm_moe_align {

// Threads per CTA of the tiled kernels, and the most any kernel uses. The
// other kernels take fewer for small inputs (LaunchPlan::threads); device
// code therefore strides by blockDim.x.
constexpr int kThreads = 1024;

// Tiny regime: each lane holds up to kTinyRoutesPerLane routes in registers,
// so one warp sees every route of a call of at most kTinyMaxRoutes.
constexpr int kTinyRoutesPerLane = 2;
constexpr int kTinyMaxRoutes = 32 * kTinyRoutesPerLane;

// Spread regime: every thread of a CTA loads this many routes, all in flight,
// so a CTA of kThreads threads holds up to kSpreadRoutesPerThread * kThreads.
constexpr int kSpreadRoutesPerThread = 8;

// Static shared memory of any kernel (the block scan's warp totals, the scan
// kernel's table), kept out of the dynamic budget.
constexpr int kStaticSmemBytes = 8 * 1024;

// Dynamic shared memory a kernel may use without opting in.
constexpr size_t kDefaultSmemBytes = 48 * 1024 - kStaticSmemBytes;

enum class Regime { kTiny, kSpread, kTiledPrefixHere, kTiledScan };

// Kernels launch_align enqueues for a regime (tiny, spread: one; tiled: count
// and scatter, plus the scan kernel for kTiledScan).
constexpr int kernel_launches(Regime r) {
  return r == Regime::kTiledScan ? 3 : r == Regime::kTiledPrefixHere ? 2 : 1;
}

// The launch sizes of one call.
struct LaunchPlan {
  Regime regime;
  int num_tiles;        // CTAs of the tiny, spread and tiled kernels
  int tile_routes;      // routes a CTA owns (spread: 32 or 64)
  int hist_warps;       // tiled: warps with a histogram row
  int threads;          // per CTA, sized to the input
  size_t smem_bytes;    // dynamic shared memory of the spread/scatter kernel
  size_t scratch_ints;  // device scratch the caller allocates (uninitialised)
  bool fits;            // false: num_experts too large for this GPU's smem
};

// Shared memory of the tiled scatter kernel, in ints:
// hist[hist_warps][E] | seg[E + 1] | cnt[E] | bins[tile_routes]
// (hist first: 16-byte aligned, zeroed with vector stores).
constexpr int smem_ints(int E, int hist_warps, int tile_routes) {
  return 2 * E + 1 + hist_warps * E + tile_routes;
}

// Shared memory of the tiled count kernel, in ints: hist[E] | one spare slot
// a lane for the routes without an expert (their atomics land there instead
// of behind a branch).
constexpr int count_smem_ints(int E) { return E + 32; }

// Shared memory of the spread kernel, in ints: cnt[E] | before[E] | seg[E + 1]
// | map[E] (a copy of expert_map when it applies while counting).
constexpr int spread_smem_ints(int E, bool map_in) { return 3 * E + 1 + (map_in ? E : 0); }

// Spread, segment fill: log2 of the lanes per expert, the power of two >=
// block_size - 1 (a segment's padding) capped at a warp; 0 when B is 1.
inline int spread_group_log2(int block_size) {
  int g = 0;
  while (g < 5 && (1 << g) < block_size - 1) ++g;
  return g;
}

// fused_globalize_align_block_size_out (globalize.cu): up to
// kFusedGlobalizeMaxRoutes routes (one CTA, a route a thread) run as one
// fused launch; larger calls run the align kernels of plan_launch's regime on
// the routes' bins (local id, or dropped). The tiled kernels compute the bins
// themselves and the scatter kernel rewrites the ids in place (it is the last
// to read them: each of its CTAs reads only its own tile, once, after the
// count kernel has finished); the tiny and spread kernels read the routes
// from several CTAs within one launch, so for them a globalize pass
// (kGlobalizeThreads a CTA) first writes the bins and rewrites the ids.
constexpr int kFusedGlobalizeMaxRoutes = kThreads;
constexpr int kGlobalizeThreads = 256;

// Whether the globalize step runs inside the align kernels of regime r (see above).
constexpr bool globalize_folds_into(Regime r) {
  return r == Regime::kTiledPrefixHere || r == Regime::kTiledScan;
}

// The launch sizes of one fused_globalize_align_block_size_out call.
struct GlobalizePlan {
  bool fused;           // one launch; else the align kernels of `align`
  bool folded;          // (not fused) the tiled kernels globalize: no pass, no bins buffer
  int threads;          // fused: its one CTA's threads; with a pass: the pass's; else 0
  int ctas;             // fused: 1; with a pass: the pass's CTAs; else 0
  size_t smem_bytes;    // fused: dynamic shared memory
  LaunchPlan align;     // (not fused) the align kernels' plan on the bins
};

// Shared memory of the fused kernel, in ints: hist[warps][row stride] |
// totals[E] | seg[E + 1]; the rows have an odd stride (no bank conflicts
// when the scan reads a column).
constexpr int fused_globalize_row_stride(int E) { return E | 1; }
constexpr int fused_globalize_smem_ints(int E, int warps) {
  return warps * fused_globalize_row_stride(E) + 2 * E + 1;
}

// The plan for numel routes over local_experts local experts (num_experts of
// the align problem: at least 1), blocks of block_size, sorted_size slots, on
// a GPU with num_sms SMs and smem_optin_bytes of opt-in shared memory per
// block (plan.cpp). Host code only.
GlobalizePlan plan_globalize(int numel, int num_experts, int block_size, int sorted_size,
                             int num_sms, int smem_optin_bytes);

// The plan for numel routes, num_experts experts and blocks of block_size,
// sorted_size output slots, on a GPU with num_sms SMs and smem_optin_bytes of
// opt-in shared memory per block. Host code only (no GPU needed).
LaunchPlan plan_launch(int numel, int num_experts, int block_size, int sorted_size, bool map_in,
                       int num_sms, int smem_optin_bytes);

}  // namespace vllm_moe_align
