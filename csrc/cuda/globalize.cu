// fused_globalize_align_block_size_out (the contract:
// vllm_moe_align_plugin/globalize_reference.py) on CUDA, in one of three ways
// (plan_globalize in plan.cpp chooses):
//
// Fused, one launch of one CTA (decode sizes): each route is loaded by one
// thread only (route i by thread i), so that thread may rewrite its id in
// place as soon as it has the route's bin, with no barrier:
//   load     the local ids, and the number of real rows from
//            psum_recv_per_rank; bin = local id, or L when dropped; the id is
//            rewritten to its global id, or -1
//   count    ranks among equal bins in the warp's 32 routes (ballots, as
//            the tiny kernel), the warp's count per expert into hist[w][e]
//   scan     per expert, the routes before each warp (a scan down the
//            warps' rows); then the padded segment starts (one warp for up
//            to 32 experts, else a block scan)
//   scatter  route i goes to seg[e] + routes of e before its warp + rank
//   fill     padding and expert ids (fill_segments, as the spread kernel)
//
// The tiled kernels (larger calls whose align plan is tiled): they compute
// each route's bin themselves and the scatter kernel rewrites the ids
// (tiled_globalize.cu).
//
// A pass, then the tiny or spread kernel (the other larger calls): the
// globalize pass, one route a thread, writes each route's bin (local id, or
// -1 when dropped) to `bins` and rewrites the id in place; the align kernel
// (tiny.cuh, spread.cuh) then sorts `bins` over the local experts. A separate
// launch because those kernels read the routes from several CTAs (spread:
// every CTA reads every route), so none of them could rewrite an id while
// another may still read it.
#include "common.cuh"

namespace vllm_moe_align {
namespace {

__global__ void __launch_bounds__(kGlobalizeThreads)
    globalize_kernel(int64_t* __restrict__ ids, const int32_t* __restrict__ psum_last,
                     int32_t* __restrict__ bins, int numel, int topk, int local_experts,
                     long long rank_offset, long long global_experts) {
  await_stream_inputs();
  // Route i is in row i / topk, a real row when that is < num_recv, that is
  // when i < num_recv * topk: no division per route.
  const long long real_routes = globalize_real_routes(psum_last, topk);
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < numel; i += gridDim.x * blockDim.x) {
    const int local = static_cast<int>(ids[i]);
    const bool valid =
        globalize_keeps(local, i, real_routes, local_experts, rank_offset, global_experts);
    bins[i] = valid ? local : -1;
    ids[i] = valid ? local + rank_offset : -1;
  }
}

// The fused kernel: one CTA, one route a thread (plan_globalize).
__global__ void __launch_bounds__(kThreads, 1)
    fused_globalize_kernel(int64_t* __restrict__ ids, const int32_t* __restrict__ psum_last,
                           int topk, int local_experts, long long rank_offset,
                           long long global_experts, Params p) {
  extern __shared__ __align__(16) int smem[];
  const int E = p.num_experts, n = p.numel;  // E = max(local_experts, 1); bin E: dropped
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  // hist rows of an odd stride: the scan reads one column across the rows,
  // and an even stride (E = 32: every row in one bank) serialises it
  const int S = fused_globalize_row_stride(E);
  int* hist = smem;                // [warps][S]: counts, then routes before the warp
  int* totals = hist + warps * S;  // [E]
  int* seg = totals + E;           // [E + 1]
  await_stream_inputs();
  // load, and the rewrite of this thread's own route
  const int i = threadIdx.x;
  const long long real_routes = globalize_real_routes(psum_last, topk);
  int key[1] = {E};
  if (i < n) {
    const int local = static_cast<int>(ids[i]);
    const bool valid =
        globalize_keeps(local, i, real_routes, local_experts, rank_offset, global_experts);
    if (valid) key[0] = local;
    ids[i] = valid ? local + rank_offset : -1;
  }
  // count
  int rank[1], count[1];
  if (wide_keys(E)) tiny_ranks<13>(key, rank, count);
  else tiny_ranks<9>(key, rank, count);
  for (int e = lane; e < E; e += 32) hist[warp * S + e] = 0;
  __syncwarp();
  if (key[0] < E && rank[0] == 0) hist[warp * S + key[0]] = count[0];
  __syncthreads();
  // scan
  if (E <= 32) {
    // One warp, lane e: a walk down column e (the routes of e before each
    // warp; the loads of 8 rows at a time in flight), then the padded
    // segment starts across the lanes. One barrier instead of three.
    if (warp == 0) {
      int run = 0;
      if (lane < E) {
        for (int w0 = 0; w0 < warps; w0 += 8) {
          int c[8];
#pragma unroll
          for (int k = 0; k < 8; ++k) c[k] = w0 + k < warps ? hist[(w0 + k) * S + lane] : 0;
#pragma unroll
          for (int k = 0; k < 8; ++k) {
            if (w0 + k < warps) hist[(w0 + k) * S + lane] = run;
            run += c[k];
          }
        }
      }
      const int B = p.block_size;
      const int padded = lane < E ? p.div_block.div(run + B - 1) * B : 0;
      const int incl = warp_inclusive_scan(padded);
      if (lane < E) {
        totals[lane] = run;
        seg[lane] = incl - padded;
      }
      if (lane == 31) seg[E] = incl;
    }
  } else {
    // Over the warps' rows, one expert per warp at a time (warps <= 32),
    // then the block scan of the padded totals.
    for (int e = warp; e < E; e += warps) {
      const int v = lane < warps ? hist[lane * S + e] : 0;
      const int incl = warp_inclusive_scan(v);
      if (lane < warps) hist[lane * S + e] = incl - v;
      if (lane == 31) totals[e] = incl;
    }
    __syncthreads();
    scan_segments(totals, seg, p);
  }
  __syncthreads();
  // scatter
  if (i < n) {
    const bool counted = key[0] < E;
    if (counted) {
      const int pos = seg[key[0]] + hist[warp * S + key[0]] + rank[0];
      if (pos < p.sorted_size) p.sorted_ids[pos] = i;  // always true; a guard
    }
    if (p.scatter_idx) p.scatter_idx[i] = counted ? i : -1;
  }
  // fill
  fill_segments(totals, seg, p, fill_ids(p));
}

}  // namespace

cudaError_t launch_globalize_fused(const GlobalizeProblem& g, const GlobalizeBuffers& b,
                                   const GlobalizePlan& plan, int device, cudaStream_t stream) {
  AlignBuffers ab{};
  ab.ids_dtype = kInt64;
  ab.sorted_ids = b.sorted_ids;
  ab.expert_ids = b.expert_ids;
  ab.post_pad = b.post_pad;
  ab.scatter_idx = b.scatter_idx;
  LaunchPlan l{};
  l.regime = Regime::kSpread;  // (unused by to_params)
  l.num_tiles = 1;
  l.tile_routes = static_cast<int>(g.numel);
  l.hist_warps = 1;
  l.threads = plan.threads;
  l.smem_bytes = plan.smem_bytes;
  l.fits = true;
  const Params p = to_params(align_problem_of(g), ab, l);
  return launch_kernel<fused_globalize_kernel>(
      1, plan.threads, plan.smem_bytes, device, stream, b.ids, b.psum + (g.psum_size - 1),
      static_cast<int>(g.topk), static_cast<int>(g.local_num_experts), g.rank_expert_offset,
      g.global_num_experts, p);
}

cudaError_t launch_globalize(const GlobalizeProblem& p, const GlobalizeBuffers& b, int32_t* bins,
                             const GlobalizePlan& plan, int device, cudaStream_t stream) {
  if (p.numel == 0) return cudaSuccess;
  return launch_kernel<globalize_kernel>(
      plan.ctas, plan.threads, 0, device, stream, b.ids, b.psum + (p.psum_size - 1), bins,
      static_cast<int>(p.numel), static_cast<int>(p.topk), static_cast<int>(p.local_num_experts),
      p.rank_expert_offset, p.global_num_experts);
}

cudaError_t preload_globalize() {
  return query_all<globalize_kernel, fused_globalize_kernel>();
}

}  // namespace vllm_moe_align
