// Tiled regime: many CTAs, one tile of routes each.
//   count_tiles_kernel   tile histograms -> scratch [tiles][E]; padding of
//                        sorted_ids
//   scan_tiles_kernel    (only when tiles * E is large) exclusive prefix over
//                        tiles per expert + totals
//   scatter_tiles_kernel per-CTA expert scan (redundant, cheap), expert_ids
//                        share, stable scatter of its tile
// Within a tile, each histogram warp owns a contiguous chunk of routes: its
// count and scatter walk the chunk in route order, so segments ascend.
//
// fused_globalize_align_block_size_out's larger calls run these kernels
// with kGlobalize (tiled_globalize.cu): a route's bin is its local id
// when the route is kept (Globalize::bin), and the scatter kernel rewrites
// each id of its tile in place as it stages the tile (the thread that reads
// a route writes it; no other CTA reads that tile in this launch, and the
// count kernel, the only other reader, has finished). The ids are read
// through a const __restrict__ pointer, so possibly through the read-only
// cache: that is safe because each id is read once, before its own thread
// writes it, and never read again in the launch.
#pragma once

#include "common.cuh"

#include <type_traits>

namespace vllm_moe_align {
namespace {

// Lanes of this warp holding the same key as this lane, for keys < 2^kBits.
// One ballot per key bit, all independent, unrolled so they issue back to
// back (__match_any_sync and a loop over a run-time bit count are both
// several times slower, and this runs once per 32 routes in every phase).
template <int kBits>
__device__ __forceinline__ unsigned peers_of_bits(int key) {
  unsigned set[kBits];
#pragma unroll
  for (int b = 0; b < kBits; ++b) set[b] = __ballot_sync(0xffffffffu, (key >> b) & 1);
  unsigned peers = 0xffffffffu;
#pragma unroll
  for (int b = 0; b < kBits; ++b) peers &= ((key >> b) & 1) ? set[b] : ~set[b];
  return peers;
}

// Keys are bins 0..E (E: dropped); `wide` (warp-uniform) when E >= 512.
__device__ __forceinline__ unsigned peers_of(int key, bool wide) {
  return wide ? peers_of_bits<13>(key) : peers_of_bits<9>(key);
}

// The bins of fused_globalize_align_block_size_out's routes (GlobalizeArgs):
// the local id of a kept route (globalize_keeps), else E.
struct Globalize {
  long long real_routes;
  GlobalizeArgs a;
  __device__ __forceinline__ static Globalize of(const GlobalizeArgs& a) {
    return {globalize_real_routes(a.psum_last, a.topk), a};
  }
  __device__ __forceinline__ int bin(int64_t raw, int i, int E) const {
    const int local = static_cast<int>(raw);
    return globalize_keeps(local, i, real_routes, a.local_experts, a.rank_offset, a.global_experts)
               ? local : E;
  }
  // The id route i holds after the call: global, or -1 when dropped.
  __device__ __forceinline__ int64_t rewritten(int bin, int E) const {
    return bin < E ? bin + a.rank_offset : -1;
  }
};

// The align op's bin of one route: with kMapIn its map lookup behind its own
// range check (bin_of); without, the range check alone (no map code).
template <bool kMapIn, typename IdT>
__device__ __forceinline__ int align_bin(IdT raw, const Params& p) {
  if constexpr (kMapIn) {
    return bin_of(raw, p, p.map);
  } else {
    const long long id = static_cast<long long>(raw);
    return id >= 0 && id < p.num_experts ? static_cast<int>(id) : p.num_experts;
  }
}

// load: calls f(i, bin) for the routes i of [lo, hi), with all kInFlight loads
// of a thread issued before the first is used; each bin is worked out right
// before its call. (A build that worked all kInFlight bins out first, map
// lookups batched, ran 1.2% slower at 65536x8 with the map applied while
// counting and at 2097152x8: KERNEL_NOTES.md.)
// Warp-uniform: the lanes of a warp make the same calls (f may use warp
// votes); lanes past hi get bin E. kMapIn: the align op's pass with the map
// applied while counting (for_each_bin picks it).
template <bool kGlobalize, bool kMapIn, typename IdT, typename F>
__device__ __forceinline__ void for_each_bin_pass(const IdT* __restrict__ ids, int lo, int hi,
                                                  const Params& p, F f, const Globalize& g) {
  constexpr int kInFlight = 8;
  const int nt = blockDim.x, lane = threadIdx.x & 31;
  for (int base = lo + threadIdx.x; base - lane < hi; base += nt * kInFlight) {
    IdT v[kInFlight];
#pragma unroll
    for (int u = 0; u < kInFlight; ++u) {
      const int i = base + u * nt;
      v[u] = i < hi ? ids[i] : IdT(0);
    }
#pragma unroll
    for (int u = 0; u < kInFlight; ++u) {
      const int i = base + u * nt;
      if (i - lane >= hi) break;  // the whole warp is past the range
      int bin = p.num_experts;
      if (i < hi) {
        if constexpr (kGlobalize) bin = g.bin(v[u], i, p.num_experts);
        else bin = align_bin<kMapIn>(v[u], p);
      }
      f(i, bin);
    }
  }
}

// The pass without any map code when there is no map to apply while
// counting (a uniform branch, once per call).
template <bool kGlobalize = false, typename IdT, typename F>
__device__ __forceinline__ void for_each_bin(const IdT* __restrict__ ids, int lo, int hi,
                                             const Params& p, F f, const Globalize& g = {}) {
  if (kGlobalize || !p.map_in) for_each_bin_pass<kGlobalize, false>(ids, lo, hi, p, f, g);
  else for_each_bin_pass<kGlobalize, true>(ids, lo, hi, p, f, g);
}

// load: bins of routes [lo, hi) into shared memory (the phases after read
// shared memory only). kGlobalize: and each route's id rewritten in place
// (`out`: the ids, writable), by the thread that read it.
template <bool kGlobalize = false, typename IdT>
__device__ __forceinline__ void stage_bins(const IdT* __restrict__ ids, int lo, int hi,
                                           int* bins, const Params& p, IdT* out = nullptr,
                                           const Globalize& g = {}) {
  for_each_bin<kGlobalize>(ids, lo, hi, p, [&](int i, int e) {
    if (i < hi) {
      bins[i - lo] = e;
      if constexpr (kGlobalize) out[i] = g.rewritten(e, p.num_experts);
    }
  }, g);
}

// Routes [begin, end) of one warp's chunk (relative to the staged bins).
struct Chunk {
  int begin;
  int end;
};

// Chunk of warp w inside n staged routes: `per` (a multiple of 32) long,
// contiguous, in warp order, so the chunks of warps 0..W-1 are the routes in order.
__device__ __forceinline__ Chunk warp_chunk(int n, int w, int per) {
  const int b = min(n, w * per);
  return {b, min(n, b + per)};
}

// count: hist_row[e] += routes of expert e in the chunk. The row belongs to
// this warp; each lane adds with a shared-memory atomic that returns nothing,
// so iterations do not wait on each other (order is irrelevant here). A
// route without an expert adds to `spare` (this thread's own slot, read by no
// one) instead of branching around its atomic.
__device__ __forceinline__ void count_chunk(const int* bins, Chunk c, int* hist_row, int E,
                                            int* spare) {
  for (int i = c.begin + (threadIdx.x & 31); i < c.end; i += 32) {
    const int e = bins[i];
    atomicAdd(e < E ? &hist_row[e] : spare, 1);
  }
}

// scatter: route i of expert e goes to seg[e] + hist_row[e] + its rank among
// the lanes of its 32-route group with the same expert (lower lanes first);
// then the leader advances the row. Route order is kept: segments ascend.
// `first` is the global index of staged route 0.
__device__ __forceinline__ void scatter_chunk(const int* bins, Chunk c, int first,
                                              const int* seg, int* hist_row, const Params& p) {
  const int lane = threadIdx.x & 31;
  const unsigned lower = (1u << lane) - 1u;
  const int E = p.num_experts;
  const bool wide = wide_keys(E);
  for (int base = c.begin; base < c.end; base += 32) {
    const int k = base + lane;
    const bool in = k < c.end;
    const int e = in ? bins[k] : E;
    const unsigned peers = peers_of(e, wide);
    const bool counted = e < E;
    const int i = first + k;
    if (counted) {
      const int pos = seg[e] + hist_row[e] + __popc(peers & lower);
      if (pos < p.sorted_size) p.sorted_ids[pos] = i;  // always true; a guard
    }
    if (in && p.scatter_idx) p.scatter_idx[i] = counted ? i : -1;
    __syncwarp();
    if (counted && lane == __ffs(peers) - 1) hist_row[e] += __popc(peers);
    __syncwarp();
  }
}

// Per expert: row w of hist becomes the routes of this expert before warp
// w's chunk, starting from before[e] (routes of earlier tiles; nullptr: 0);
// cnt[e] = this CTA's routes of e when set_cnt. Threads split as (row group,
// expert) so no thread walks all W rows: partial sums per group, a short
// scan over groups, then each group rewrites its rows. `part` holds
// blockDim.x ints. Contains barriers: every thread must call it.
__device__ void warp_prefixes(int* hist, const int* before, int* cnt, bool set_cnt, int* part,
                              const Params& p) {
  const int W = p.hist_warps, E = p.num_experts;
  const int groups = p.row_groups, per = p.rows_per_group;
  const int g = p.div_experts.div(threadIdx.x);  // meaningful when E < blockDim.x
  const int e_of_thread = threadIdx.x - g * E;
  if (groups > 1) {
    if (g < groups) {
      const int e = e_of_thread;
      int sum = 0;
      for (int w = g * per; w < min(W, g * per + per); ++w) sum += hist[w * E + e];
      part[g * E + e] = sum;
    }
    __syncthreads();
    if (g < groups) {
      const int e = e_of_thread;
      int run = before ? before[e] : 0;
      const int start = run;
      for (int k = 0; k < g; ++k) run += part[k * E + e];
      if (set_cnt && g == groups - 1) {
        int total = run;
        for (int w = g * per; w < min(W, g * per + per); ++w) total += hist[w * E + e];
        cnt[e] = total - start;
      }
      for (int w = g * per; w < min(W, g * per + per); ++w) {
        const int c = hist[w * E + e];
        hist[w * E + e] = run;
        run += c;
      }
    }
    return;
  }
  for (int e = threadIdx.x; e < E; e += blockDim.x) {
    int run = before ? before[e] : 0;
    const int start = run;
    for (int w = 0; w < W; ++w) {
      const int c = hist[w * E + e];
      hist[w * E + e] = run;
      run += c;
    }
    if (set_cnt) cnt[e] = run - start;
  }
}

// Largest e with seg[e] <= x, for 0 <= x < seg[E]: the expert owning slot x.
__device__ __forceinline__ int owner_of(const int* seg, int E, int x) {
  int lo = 0, hi = E;
  while (hi - lo > 1) {
    const int mid = (lo + hi) >> 1;
    if (seg[mid] <= x) lo = mid; else hi = mid;
  }
  return lo;
}

// fill (padding): this CTA's share (cta of ctas) of setting every slot of
// sorted_ids to the padding value. Runs before the scatter, ordered by a
// kernel boundary (the count kernel fills, the scatter kernel follows), so
// the scatter simply overwrites the route slots: one flat coalesced pass
// instead of per-expert padding loops, which cost far more.
__device__ void fill_padding(int cta, int ctas, const Params& p) {
  fill_range(p.sorted_ids, 0, p.sorted_size, p.numel, cta * blockDim.x + threadIdx.x,
             ctas * blockDim.x);
}

// fill (blocks): num_tokens_post_pad, and expert_ids: the owner of each used
// block, then the tail value. This CTA's share: cta of ctas.
__device__ void fill_expert_ids(const int* seg, int cta, int ctas, const Params& p) {
  const int E = p.num_experts, B = p.block_size;
  const int total = seg[E];
  const int gthread = cta * blockDim.x + threadIdx.x;
  const int gstride = ctas * blockDim.x;
  if (gthread == 0) *p.post_pad = total;
  const int used = p.div_block.div(total);
  const int tail = tail_expert(p);
  for (int b = gthread; b < p.expert_ids_size; b += gstride) {
    int v = tail;
    if (b < used) {
      const int e = owner_of(seg, E, b * B);
      v = p.map_out ? __ldg(p.map + e) : e;
    }
    p.expert_ids[b] = v;
  }
}

// count (tiled): tile histogram -> tile_hist[tile][e]. Order does not matter
// here: one shared row, one shared-memory atomic per route, loads all in
// flight. (Aggregating equal experts of a warp with ballots first, to save
// atomics, is slower: the ballots are more instructions than the atomics
// they save at realistic expert counts.) A route without an expert adds to
// hist[E + lane], a spare slot that is never read (count_smem_ints), instead
// of branching around its atomic.
template <bool kGlobalize, typename IdT>
__device__ __forceinline__ void count_tiles(const IdT* __restrict__ ids, const Params& p,
                                            const Globalize& g) {
  extern __shared__ int hist[];
  const int E = p.num_experts;
  const int lo = blockIdx.x * p.tile_routes;
  const int hi = min(p.numel, lo + p.tile_routes);
  for (int e = threadIdx.x; e < E; e += blockDim.x) hist[e] = 0;
  fill_padding(blockIdx.x, gridDim.x, p);  // the scatter kernel runs after this one
  __syncthreads();
  int* const spare = hist + E + (threadIdx.x & 31);
  for_each_bin<kGlobalize>(ids, lo, hi, p, [&](int, int e) {
    atomicAdd(e < E ? &hist[e] : spare, 1);
  }, g);
  __syncthreads();
  int* out = p.tile_hist + static_cast<size_t>(blockIdx.x) * E;
  for (int e = threadIdx.x; e < E; e += blockDim.x) out[e] = hist[e];
}

template <typename IdT>
__global__ void __launch_bounds__(kThreads)
    count_tiles_kernel(const IdT* __restrict__ ids, Params p) {
  await_stream_inputs();
  count_tiles<false>(ids, p, Globalize{});
}

// scan (tiled, many tiles): per expert, tile counts -> exclusive prefix over
// tiles (in place), and totals[e]. CTA = 32 experts (lanes) x 32 tile groups
// (warps): reads of one tile row are coalesced.
__global__ void __launch_bounds__(kThreads) scan_tiles_kernel(Params p) {
  __shared__ int part[kWarps][33];
  const int E = p.num_experts, T = p.num_tiles;
  const int lane = threadIdx.x & 31, g = threadIdx.x >> 5;
  const int e = blockIdx.x * 32 + lane;
  const int per = (T + kWarps - 1) / kWarps;
  const int t0 = min(T, g * per), t1 = min(T, t0 + per);
  await_stream_inputs();
  int sum = 0;
  if (e < E)
    for (int t = t0; t < t1; ++t) sum += p.tile_hist[static_cast<size_t>(t) * E + e];
  part[g][lane] = sum;
  __syncthreads();
  if (g == 0) {
    int run = 0;
    for (int k = 0; k < kWarps; ++k) {
      const int v = part[k][lane];
      part[k][lane] = run;
      run += v;
    }
    if (e < E) p.totals[e] = run;
  }
  __syncthreads();
  if (e < E) {
    int run = part[g][lane];
    for (int t = t0; t < t1; ++t) {
      int* cell = p.tile_hist + static_cast<size_t>(t) * E + e;
      const int v = *cell;
      *cell = run;
      run += v;
    }
  }
}

// Tile prefix and totals from the raw tile counts, in this CTA (no scan
// kernel ran; tiles * E is small): before[e] = routes of e in tiles < tile,
// cnt[e] = routes of e in all tiles. Both arrays must be zero on entry.
// The reads come from L2 and each thread's are independent, so the cost is
// the number of round trips: threads split as (tile group, column of V
// experts), V = 4 (16-byte loads) when E allows, and kInFlight loads of a
// thread are issued before any is added, so a typical tile count needs one
// dependent round trip instead of one per few tiles.
template <int V>
__device__ void tile_prefix_here(const Params& p, int tile, int* before, int* cnt) {
  using Vec = typename std::conditional<V == 4, int4, int>::type;
  constexpr int kInFlight = kPrefixInFlight;
  const int T = p.num_tiles, cols = p.prefix_cols;
  const int groups = p.tile_groups;
  const int g = p.div_prefix_cols.div(threadIdx.x);
  if (g >= groups) return;
  const Vec* rows = reinterpret_cast<const Vec*>(p.tile_hist);
  for (int c = threadIdx.x - g * cols; c < cols; c += blockDim.x) {
    int b[V] = {}, total[V] = {};
    for (int t0 = g; t0 < T; t0 += groups * kInFlight) {
      Vec v[kInFlight];
#pragma unroll
      for (int u = 0; u < kInFlight; ++u) {
        const int t = t0 + u * groups;
        if (t < T) v[u] = rows[static_cast<size_t>(t) * cols + c];
      }
#pragma unroll
      for (int u = 0; u < kInFlight; ++u) {
        const int t = t0 + u * groups;
        if (t >= T) break;
        const int* x = reinterpret_cast<const int*>(&v[u]);
#pragma unroll
        for (int k = 0; k < V; ++k) {
          total[k] += x[k];
          b[k] += t < tile ? x[k] : 0;
        }
      }
    }
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const int e = c * V + k;
      if (groups > 1) {
        atomicAdd(&before[e], b[k]);
        atomicAdd(&cnt[e], total[k]);
      } else {
        before[e] = b[k];
        cnt[e] = total[k];
      }
    }
  }
}

// scatter (tiled): segment starts (every CTA scans the E totals itself),
// this CTA's share of the fill, and the stable scatter of its tile.
// kPrefixHere: no scan kernel ran; derive totals and this tile's prefix from
// the raw tile counts (cheap while tiles * E is small).
template <bool kPrefixHere, bool kGlobalize, typename IdT>
__device__ __forceinline__ void scatter_tiles(const IdT* __restrict__ ids, const Params& p,
                                              const GlobalizeArgs& ga) {
  extern __shared__ __align__(16) int smem[];
  const int E = p.num_experts, W = p.hist_warps;
  const int tile = blockIdx.x;
  int* hist = smem;
  int* seg = hist + W * E;  // holds the tile prefix until the scan needs seg
  int* cnt = seg + E + 1;
  int* bins = cnt + E;
  const int warp = threadIdx.x >> 5;
  const int lo = tile * p.tile_routes;
  const int hi = min(p.numel, lo + p.tile_routes);
  zero_ints(hist, W * E);
  if (kPrefixHere) {
    for (int e = threadIdx.x; e < E; e += blockDim.x) seg[e] = cnt[e] = 0;
  } else {
    for (int e = threadIdx.x; e < E; e += blockDim.x) {
      cnt[e] = p.totals[e];
      seg[e] = p.tile_hist[static_cast<size_t>(tile) * E + e];
    }
  }
  if constexpr (kGlobalize) stage_bins<true>(ids, lo, hi, bins, p, ga.ids, Globalize::of(ga));
  else stage_bins(ids, lo, hi, bins, p);
  __syncthreads();
  if (kPrefixHere) {
    if (p.prefix_cols == E) tile_prefix_here<1>(p, tile, seg, cnt);
    else tile_prefix_here<4>(p, tile, seg, cnt);
  }
  const Chunk chunk = warp_chunk(hi - lo, warp, p.warp_routes);
  // part[] is warp_prefixes' scratch, which it writes before it reads; until
  // then part[threadIdx.x] is this thread's spare slot for the count.
  __shared__ int part[kThreads];
  if (warp < W) count_chunk(bins, chunk, hist + warp * E, E, &part[threadIdx.x]);
  __syncthreads();
  warp_prefixes(hist, seg, cnt, false, part, p);
  __syncthreads();
  scan_segments(cnt, seg, p);
  __syncthreads();
  fill_expert_ids(seg, tile, p.num_tiles, p);
  if (warp < W) scatter_chunk(bins, chunk, lo, seg, hist + warp * E, p);
}

template <typename IdT, bool kPrefixHere>
__global__ void __launch_bounds__(kThreads, 1)
    scatter_tiles_kernel(const IdT* __restrict__ ids, Params p) {
  await_stream_inputs();
  scatter_tiles<kPrefixHere, false>(ids, p, GlobalizeArgs{});
}

// The tiled launches: the count kernel, the scan kernel for kTiledScan, then
// the scatter kernel of the regime (prefix here, or after the scan). The
// align op's kernels and the globalize op's launch alike; each of them takes
// `args`.
template <auto kCount, auto kScatterPrefixHere, auto kScatterScanned, typename... Args>
cudaError_t launch_tiles(const Params& p, const LaunchPlan& l, int device, int smem_optin_bytes,
                         cudaStream_t stream, const Args&... args) {
  cudaError_t err = launch_kernel<kCount>(l.num_tiles, l.threads,
                                          sizeof(int) * count_smem_ints(p.num_experts), device,
                                          stream, args...);
  if (err != cudaSuccess) return err;
  if (l.regime == Regime::kTiledScan) {
    err = launch_kernel<scan_tiles_kernel>((p.num_experts + 31) / 32, kThreads, 0, device, stream,
                                           p);
    if (err != cudaSuccess) return err;
    return launch_with_smem<kScatterScanned>(l, device, smem_optin_bytes, stream, args...);
  }
  return launch_with_smem<kScatterPrefixHere>(l, device, smem_optin_bytes, stream, args...);
}

template <typename IdT>
cudaError_t launch_typed(const IdT* ids, const Params& p, const LaunchPlan& l, int device,
                         int smem_optin_bytes, cudaStream_t stream) {
  return launch_tiles<count_tiles_kernel<IdT>, scatter_tiles_kernel<IdT, true>,
                      scatter_tiles_kernel<IdT, false>>(p, l, device, smem_optin_bytes, stream,
                                                        ids, p);
}

// (Each module of tiled kernels has its own copy of scan_tiles_kernel.)
template <typename IdT>
cudaError_t preload_typed() {
  return query_all<count_tiles_kernel<IdT>, scan_tiles_kernel, scatter_tiles_kernel<IdT, true>,
                   scatter_tiles_kernel<IdT, false>>();
}

}  // namespace
}  // namespace vllm_moe_align
