// Spread regime: small batches and small prefills (kTinyMaxRoutes + 1 up to
// kSpreadMaxRoutes routes), one launch over many CTAs.
//
// CTA c owns the tile of 32 * R consecutive routes starting at c * 32 * R.
// Every CTA counts ALL the routes itself (the ids are a few KB and come from
// L2 after the first CTA touches them): per expert the total, and the routes
// before its tile. So no CTA waits for another - no second launch, no grid
// barrier - and each works the whole layout out from its own counts:
//   load     every route (kSpreadRoutesPerThread a thread, all in flight);
//            warp 0 also loads the tile's routes
//   count    shared-memory atomics: before[e] for the routes before the
//            tile, cnt[e] for all (one expert a thread in the scan: for the
//            others only); warp 0 ranks the tile's routes among equal
//            experts with ballots meanwhile (as the tiny kernel does)
//   scan     (one atomic a route: cnt[e] += before[e]); padded totals ->
//            seg[] (block scan)
//   scatter  warp 0: route i goes to seg[e] + before[e] + rank in the tile
//   fill     lane group g of the grid (groups of up to 32 lanes, sized to
//            the block's padding): padding slots and expert ids of experts
//            g, g + groups, ...; every thread: its share of the tail
// The writes of different CTAs never overlap, so nothing has to be ordered.
// (Ranking every route in one CTA instead puts all the work on one SM,
// behind several barriers: slower at these sizes.)
#pragma once

#include "common.cuh"

namespace vllm_moe_align {
namespace {

// Launch bounds (kThreads, 1): as for the tiny kernel (tiny.cuh).
template <typename IdT, int R>
__global__ void __launch_bounds__(kThreads, 1) spread_kernel(const IdT* __restrict__ ids, Params p) {
  extern __shared__ __align__(16) int smem[];
  const int E = p.num_experts, n = p.numel;
  int* cnt = smem;
  int* before = cnt + E;
  int* seg = before + E;
  int* map = seg + E + 1;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int lo = blockIdx.x * 32 * R;  // this CTA's tile
  await_stream_inputs();
  // load
  IdT v[kSpreadRoutesPerThread];
#pragma unroll
  for (int u = 0; u < kSpreadRoutesPerThread; ++u) {
    const int i = threadIdx.x + u * blockDim.x;
    v[u] = i < n ? ids[i] : IdT(0);
  }
  IdT own[R];
  if (warp == 0) {
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int i = lo + r * 32 + lane;
      own[r] = i < n ? ids[i] : IdT(0);
    }
  }
  const FillIds fill = fill_ids(p);  // (with a map on the output: in flight while counting)
  // The map is looked up once per route and CTA, so it is copied to shared
  // memory alongside the id loads instead of being read from global memory
  // after them.
  // The copy holds bins, not raw entries: the local id, or E where the map
  // drops the expert, so a lookup needs no range check of its own.
  if (p.map_in)
    for (int e = threadIdx.x; e < E; e += blockDim.x) {
      const int m = __ldg(p.map + e);
      map[e] = m >= 0 && m < E ? m : E;
    }
  zero_ints(cnt, 2 * E);
  __syncthreads();
  // count. One atomic per route (before[e] or cnt[e], summed in the scan)
  // when each thread scans one expert, with every bin (map lookups included)
  // worked out before the first atomic: a lookup after an atomic would wait
  // for it. With several experts a thread, the scan's extra reads and writes
  // of consecutive experts conflict in shared memory and cost more than the
  // atomics they save: every route counts in cnt[e] and those before the tile
  // in before[e] too, each route's bin right before its atomics (a build
  // with all bins first there ran 5% slower at 2048 routes and 4096
  // experts: KERNEL_NOTES.md). (uniform)
  const bool one_atomic = p.experts_per_thread == 1;
  if (one_atomic) {
    bool here[kSpreadRoutesPerThread];
    int e[kSpreadRoutesPerThread];
#pragma unroll
    for (int u = 0; u < kSpreadRoutesPerThread; ++u) here[u] = threadIdx.x + u * blockDim.x < n;
    bins_of<true>(v, here, p, map, e);
#pragma unroll
    for (int u = 0; u < kSpreadRoutesPerThread; ++u) {
      if (e[u] >= E) continue;
      const bool early = static_cast<int>(threadIdx.x + u * blockDim.x) < lo;
      atomicAdd((early ? before : cnt) + e[u], 1);
    }
  } else {
#pragma unroll
    for (int u = 0; u < kSpreadRoutesPerThread; ++u) {
      const int i = threadIdx.x + u * blockDim.x;
      if (i >= n) break;
      const int e = bin_of(v[u], p, map);
      if (e < E) {
        atomicAdd(&cnt[e], 1);
        if (i < lo) atomicAdd(&before[e], 1);
      }
    }
  }
  int key[R], rank[R], count[R];
  if (warp == 0) {
    bool mine[R];
#pragma unroll
    for (int r = 0; r < R; ++r) mine[r] = lo + r * 32 + lane < n;
    bins_of<true>(own, mine, p, map, key);
    if (wide_keys(E)) tiny_ranks<13>(key, rank, count);
    else tiny_ranks<9>(key, rank, count);
  }
  __syncthreads();
  // scan
  if (one_atomic) scan_segments<true>(cnt, seg, p, before);
  else scan_segments<false>(cnt, seg, p);
  __syncthreads();
  // scatter: this CTA's routes
  if (warp == 0) {
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int i = lo + r * 32 + lane;
      if (i >= n) break;
      const bool counted = key[r] < E;
      if (counted) {
        const int pos = seg[key[r]] + before[key[r]] + rank[r];
        if (pos < p.sorted_size) p.sorted_ids[pos] = i;  // always true; a guard
      }
      if (p.scatter_idx) p.scatter_idx[i] = counted ? i : -1;
    }
  }
  // fill
  fill_segments(cnt, seg, p, fill);
}

template <typename IdT>
cudaError_t launch_typed(const IdT* ids, const Params& p, const LaunchPlan& l, int device,
                         int smem_optin_bytes, cudaStream_t stream) {
  if (l.tile_routes == 32)
    return launch_with_smem<spread_kernel<IdT, 1>>(l, device, smem_optin_bytes, stream, ids, p);
  return launch_with_smem<spread_kernel<IdT, 2>>(l, device, smem_optin_bytes, stream, ids, p);
}

template <typename IdT>
cudaError_t preload_typed() {
  return query_all<spread_kernel<IdT, 1>, spread_kernel<IdT, 2>>();
}

}  // namespace
}  // namespace vllm_moe_align
