// CUDA kernels of moe_align_block_size: a stable counting sort of the routes
// by expert, every output element written by the kernels themselves (no
// memset, no fill launch), in four named phases:
//
//   count    per-warp histograms of contiguous route chunks (shared memory)
//   scan     padded per-expert totals -> segment starts (block-wide scan)
//   fill     sorted_ids set to the padding value first (the scatter then
//            overwrites route slots), expert_ids and post_pad after the scan
//   scatter  each warp walks its chunk again in route order and places each
//            route at  segment start + routes of earlier chunks + rank among
//            equal experts in the same 32-route group  (so segments ascend)
//
// Size regimes (chosen in plan_launch(), the one place launch sizes live):
//   tiny    decode batches: every warp computes the whole layout of the few
//           routes in registers (no shared memory, no barrier) and the
//           warps split writes that never overlap. One launch.
//   spread  small batches: one launch over many CTAs; every CTA counts all
//           the routes itself (no CTA waits for another) and places the
//           routes of its own small tile.
//   tiled   many CTAs, one tile of routes each:
//             count_tiles_kernel   tile histograms -> scratch [tiles][E];
//                                  padding of sorted_ids
//             scan_tiles_kernel    (only when tiles*E is large) exclusive
//                                  prefix over tiles per expert + totals
//             scatter_tiles_kernel per-CTA expert scan (redundant, cheap),
//                                  expert_ids share, stable scatter of its tile
#include "moe_align_kernels.h"

#include <algorithm>
#include <atomic>
#include <type_traits>

namespace vllm_moe_align {
namespace {

// Threads per CTA of the tiled kernels, and the most any kernel uses. The
// other kernels take fewer for small inputs (LaunchPlan::threads); device
// code therefore strides by blockDim.x.
constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;

// Division by a divisor fixed for the whole launch, by multiply and shift
// (Granlund-Montgomery). GPUs have no integer divide instruction: a division
// by a run-time value compiles to ~25 dependent instructions, and the profile
// of the (since replaced) single-CTA kernel showed such divisions on its
// critical path.
// Valid for 0 <= n < 2^31.
struct FastDiv {
  uint32_t d, m, s;
  static FastDiv make(uint32_t d) {
    uint32_t l = 0;
    while ((uint64_t{1} << l) < d) ++l;
    const uint64_t m = ((uint64_t{1} << 32) * ((uint64_t{1} << l) - d)) / d + 1;
    return {d, static_cast<uint32_t>(m), l};
  }
  __device__ __forceinline__ int div(int n) const {
    if (s == 0) return n;  // d == 1
    const uint32_t un = static_cast<uint32_t>(n);
    const uint32_t t = __umulhi(un, m);
    return static_cast<int>((t + ((un - t) >> 1)) >> (s - 1));
  }
};

// What the kernels read: the call's parameters, the launch plan's sizes and
// everything derived from them once on the host (so the kernels divide by
// run-time values only through FastDiv).
struct Params : KernelParams {
  int32_t* tile_hist;  // tiled: [num_tiles][E] counts, then tile prefixes
  int32_t* totals;     // tiled with scan kernel: [E] routes per expert
  int hist_warps;      // warps with a histogram row (shared memory bound)
  int tile_routes;     // routes per tile
  int num_tiles;
  int warp_routes;          // routes per histogram warp (a multiple of 32)
  int experts_per_thread;   // ceil(E / blockDim.x), for the expert scan
  int row_groups;           // warp_prefixes: thread groups per expert
  int rows_per_group;       //   and histogram rows per group
  int prefix_cols;          // tile_prefix_here: columns of 4 experts (E / 4), or E
  int tile_groups;          //   and thread groups per column
  FastDiv div_prefix_cols;  //   / prefix_cols
  // spread: lanes per expert when filling segments, and its log2. (Both
  // passed: deriving G in the kernel measured +0.08 us at 256x8, H100.)
  int spread_group;
  int spread_group_log2;
  FastDiv div_block;        // / block_size
  FastDiv div_experts;      // / num_experts
};

// Bin of a route: its expert (local id when mapping while counting), or E
// when it is dropped (id out of range, or mapped to -1).
// `map` is p.map or a copy of it (shared memory).
template <typename IdT>
__device__ __forceinline__ int bin_of(IdT raw, const Params& p, const int* map) {
  const long long id = static_cast<long long>(raw);
  if (id < 0 || id >= p.num_experts) return p.num_experts;
  if (!p.map_in) return static_cast<int>(id);
  const int local = map[id];
  return (local >= 0 && local < p.num_experts) ? local : p.num_experts;
}

template <typename IdT>
__device__ __forceinline__ int bin_of(IdT raw, const Params& p) {
  return bin_of(raw, p, p.map);
}

__device__ __forceinline__ int warp_inclusive_scan(int v) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int d = 1; d < 32; d <<= 1) {
    const int u = __shfl_up_sync(0xffffffffu, v, d);
    if (lane >= d) v += u;
  }
  return v;
}

// Lanes of this warp holding the same key as this lane, for keys < 2^kBits.
// One ballot per key bit, all independent, unrolled so they issue back to
// back (__match_any_sync and a loop over a run-time bit count both cost
// several hundred cycles per call on the H100 and dominated every phase).
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

__device__ __forceinline__ bool wide_keys(int E) { return E >= 512; }

// load: calls f(i, bin) for the routes i of [lo, hi), with all kInFlight loads
// of a thread issued before the first is used. Warp-uniform: the lanes of a
// warp make the same calls (f may use warp votes); lanes past hi get bin E.
template <typename IdT, typename F>
__device__ __forceinline__ void for_each_bin(const IdT* __restrict__ ids, int lo, int hi,
                                             const Params& p, F f) {
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
      f(i, i < hi ? bin_of(v[u], p) : p.num_experts);
    }
  }
}

// load: bins of routes [lo, hi) into shared memory (the phases after read
// shared memory only).
template <typename IdT>
__device__ __forceinline__ void stage_bins(const IdT* __restrict__ ids, int lo, int hi,
                                           int* bins, const Params& p) {
  for_each_bin(ids, lo, hi, p, [&](int i, int e) {
    if (i < hi) bins[i - lo] = e;
  });
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
// so iterations do not wait on each other (order is irrelevant here).
__device__ __forceinline__ void count_chunk(const int* bins, Chunk c, int* hist_row, int E) {
  for (int i = c.begin + (threadIdx.x & 31); i < c.end; i += 32) {
    const int e = bins[i];
    if (e < E) atomicAdd(&hist_row[e], 1);
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

// scan: seg[e] = sum over e' < e of round_up(cnt[e'], B); seg[E] = total.
// Thread t owns experts [t*per, t*per + per). Caller syncs before and after.
__device__ void scan_segments(const int* cnt, int* seg, const Params& p) {
  __shared__ int warp_total[kWarps];
  const int E = p.num_experts, B = p.block_size;
  const int per = p.experts_per_thread;
  const int e0 = min(E, static_cast<int>(threadIdx.x) * per);
  const int e1 = min(E, e0 + per);
  int local = 0;
  for (int e = e0; e < e1; ++e) local += p.div_block.div(cnt[e] + B - 1) * B;
  const int incl = warp_inclusive_scan(local);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 31) warp_total[warp] = incl;
  __syncthreads();
  if (warp == 0) {
    const int v = lane < static_cast<int>(blockDim.x >> 5) ? warp_total[lane] : 0;
    warp_total[lane] = warp_inclusive_scan(v);
  }
  __syncthreads();
  int offset = incl - local + (warp > 0 ? warp_total[warp - 1] : 0);
  for (int e = e0; e < e1; ++e) {
    seg[e] = offset;
    offset += p.div_block.div(cnt[e] + B - 1) * B;
  }
  if (threadIdx.x == blockDim.x - 1) seg[E] = offset;
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

// Sets out[lo, hi) to `value`: this thread's share (gthread of gstride), with
// 16-byte stores between a scalar head and tail.
__device__ __forceinline__ void fill_range(int* out, int lo, int hi, int value, int gthread,
                                           int gstride) {
  if (lo >= hi) return;
  const int head = min(hi, lo + static_cast<int>(
                               (16 - reinterpret_cast<uintptr_t>(out + lo) % 16) % 16 / 4));
  if (lo + gthread < head) out[lo + gthread] = value;
  const int nvec = (hi - head) / 4;
  int4* vout = reinterpret_cast<int4*>(out + head);
  const int4 v4 = make_int4(value, value, value, value);
  for (int k = gthread; k < nvec; k += gstride) vout[k] = v4;
  for (int k = head + nvec * 4 + gthread; k < hi; k += gstride) out[k] = value;
}

// fill (padding): this CTA's share (cta of ctas) of setting every slot of
// sorted_ids to the padding value. Runs before the scatter, ordered by a
// kernel boundary (the count kernel fills, the scatter kernel follows), so
// the scatter simply overwrites the route slots: one flat coalesced pass
// instead of per-expert padding loops (which were the largest item of an
// earlier one-CTA kernel's profile on the H100).
__device__ void fill_padding(int cta, int ctas, const Params& p) {
  fill_range(p.sorted_ids, 0, p.sorted_size, p.numel, cta * blockDim.x + threadIdx.x,
             ctas * blockDim.x);
}

// The expert_ids value of the blocks past the used ones (the contract's tail,
// mapped like every other entry when the map applies to the output).
__device__ __forceinline__ int tail_expert(const Params& p) {
  const int tail = p.expert_ids_tail;
  if (!p.map_out) return tail;
  return __ldg(p.map + (tail >= 0 ? tail : tail + p.num_experts));
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

// Shared memory of the scatter kernel, in ints:
// hist[hist_warps][E] | seg[E + 1] | cnt[E] | bins[tile_routes]
// (hist first: 16-byte aligned, zeroed with vector stores).
__host__ __device__ constexpr int smem_ints(int E, int hist_warps, int tile_routes) {
  return 2 * E + 1 + hist_warps * E + tile_routes;
}

__device__ __forceinline__ void zero_ints(int* a, int count) {
  int4* a4 = reinterpret_cast<int4*>(a);
  for (int k = threadIdx.x; k < count / 4; k += blockDim.x) a4[k] = make_int4(0, 0, 0, 0);
  for (int k = count / 4 * 4 + threadIdx.x; k < count; k += blockDim.x) a[k] = 0;
}

// ---------------------------------------------------------------------------
// tiny regime: at most kTinyMaxRoutes routes (decode batches).
//
// Every warp of every CTA loads all the routes (R <= kTinyRoutesPerLane a
// lane) and works the whole layout out in registers: no shared memory, no
// barrier, one global load on the critical path (two with a map applied while
// counting). The warps then split the writes, which never overlap, so nothing
// has to be ordered:
//   all warps  padding past the last segment (16-byte stores), expert_ids
//              past the used blocks, and a share of each segment's padding
//              and expert ids
//   warp 0     the routes, num_tokens_post_pad, scatter_idx
// ---------------------------------------------------------------------------
constexpr int kTinyRoutesPerLane = 2;
constexpr int kTinyMaxRoutes = 32 * kTinyRoutesPerLane;
// A padded segment of <= kTinyMaxRoutes routes is < 2048 slots (block_size
// <= 1024), so (key, padded size) pack into one int for the shuffles.
constexpr int kTinyPadBits = 11;
// Map entries a lane holds in registers (maps of up to 256 experts).
constexpr int kTinyMapRegs = 8;

// rank[r]: routes before route (r, lane) with the same key; count[r]: routes
// with its key. One ballot per key bit and route group, all independent.
template <int kBits, int R>
__device__ __forceinline__ void tiny_ranks(const int (&key)[R], int (&rank)[R], int (&count)[R]) {
  const unsigned lower = (1u << (threadIdx.x & 31)) - 1u;
  unsigned set[R][kBits];
#pragma unroll
  for (int g = 0; g < R; ++g)
#pragma unroll
    for (int b = 0; b < kBits; ++b) set[g][b] = __ballot_sync(0xffffffffu, (key[g] >> b) & 1);
#pragma unroll
  for (int r = 0; r < R; ++r) {
    rank[r] = 0;
    count[r] = 0;
#pragma unroll
    for (int g = 0; g < R; ++g) {
      unsigned peers = 0xffffffffu;
#pragma unroll
      for (int b = 0; b < kBits; ++b) peers &= ((key[r] >> b) & 1) ? set[g][b] : ~set[g][b];
      count[r] += __popc(peers);
      if (g < r) rank[r] += __popc(peers);
      if (g == r) rank[r] += __popc(peers & lower);
    }
  }
}

// Launch bounds (kThreads, 1) on the tiny and spread kernels: with the
// block size alone ptxas held them to 32 registers and spilled (ptxas -v);
// the occupancy that would buy is of no use to launches of one CTA per SM.
template <typename IdT, int R>
__global__ void __launch_bounds__(kThreads, 1) tiny_kernel(const IdT* __restrict__ ids, Params p) {
  const int lane = threadIdx.x & 31;
  const int E = p.num_experts, B = p.block_size, n = p.numel;
  // load
  IdT raw[R];
#pragma unroll
  for (int r = 0; r < R; ++r) raw[r] = r * 32 + lane < n ? ids[r * 32 + lane] : IdT(0);
  // Mapping while counting: a map of up to kTinyMapRegs * 32 entries is
  // loaded into registers alongside the ids (lane l holds entries l, l + 32,
  // ...) and looked up with shuffles, so the lookup is not a second global
  // round trip after the ids. (H100, 1x8 routes, E=256: 2.61 us this way,
  // 2.74 looking the map up in global memory, 1.96 without a map; a
  // shared-memory copy, which needs a barrier, was slower: 2.84-2.95 us.)
  const bool map_regs = p.map_in && E <= 32 * kTinyMapRegs;  // warp-uniform
  int mreg[kTinyMapRegs];
  if (map_regs) {
#pragma unroll
    for (int k = 0; k < kTinyMapRegs; ++k)
      mreg[k] = k * 32 + lane < E ? __ldg(p.map + k * 32 + lane) : -1;
  }
  int key[R];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const bool here = r * 32 + lane < n;
    if (!map_regs) {
      key[r] = here ? bin_of(raw[r], p) : E;
      continue;
    }
    const long long id = static_cast<long long>(raw[r]);
    const bool valid = here && id >= 0 && id < E;
    const int x = valid ? static_cast<int>(id) : 0;
    int local = -1;
#pragma unroll
    for (int k = 0; k < kTinyMapRegs; ++k) {
      const int m = __shfl_sync(0xffffffffu, mreg[k], x & 31);
      if ((x >> 5) == k) local = m;
    }
    key[r] = valid && local >= 0 && local < E ? local : E;
  }
  // count
  int rank[R], count[R];
  if (wide_keys(E)) tiny_ranks<13>(key, rank, count);
  else tiny_ranks<9>(key, rank, count);
  // scan: a segment's start is the padded size of every smaller key's segment
  int padded[R], pack[R], total = 0;
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const bool leader = key[r] < E && rank[r] == 0;
    padded[r] = leader ? p.div_block.div(count[r] + B - 1) * B : 0;
    pack[r] = (key[r] << kTinyPadBits) | padded[r];
    total += padded[r];
  }
  int start[R] = {};
#pragma unroll
  for (int src = 0; src < 32; ++src)
#pragma unroll
    for (int g = 0; g < R; ++g) {
      const int v = __shfl_sync(0xffffffffu, pack[g], src);
#pragma unroll
      for (int r = 0; r < R; ++r)
        start[r] += (v >> kTinyPadBits) < key[r] ? v & ((1 << kTinyPadBits) - 1) : 0;
    }
#pragma unroll
  for (int d = 16; d > 0; d >>= 1) total += __shfl_xor_sync(0xffffffffu, total, d);
  const int used = p.div_block.div(total);
  // fill: past the last segment, all CTAs
  const int gthread = blockIdx.x * blockDim.x + threadIdx.x, gstride = gridDim.x * blockDim.x;
  fill_range(p.sorted_ids, total, p.sorted_size, n, gthread, gstride);
  fill_range(p.expert_ids, used, p.expert_ids_size, tail_expert(p), gthread, gstride);
  // fill: inside each segment. Every warp knows every segment (lane order),
  // so global warp w takes the slots and blocks w, w + warps, ... of each
  // segment: no loop over segments, and the CTAs share the work.
  const int gwarp = gthread >> 5, gwarps = gstride >> 5;
#pragma unroll
  for (int r = 0; r < R; ++r) {
    if (padded[r] == 0) continue;
    // (the bounds always hold, by the output sizes; they are guards)
    const int x_end = min(start[r] + padded[r], p.sorted_size);
    for (int x = start[r] + count[r] + gwarp; x < x_end; x += gwarps) p.sorted_ids[x] = n;
    const int b0 = p.div_block.div(start[r]);
    const int b_end = min(b0 + p.div_block.div(padded[r]), p.expert_ids_size);
    if (b0 + gwarp < b_end) {
      const int owner = p.map_out ? __ldg(p.map + key[r]) : key[r];
      for (int b = b0 + gwarp; b < b_end; b += gwarps) p.expert_ids[b] = owner;
    }
  }
  // scatter: the routes, by global warp 0
  if (gwarp != 0) return;
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int i = r * 32 + lane;
    if (i >= n) continue;
    const int pos = start[r] + rank[r];
    if (key[r] < E && pos < p.sorted_size) p.sorted_ids[pos] = i;
    if (p.scatter_idx) p.scatter_idx[i] = key[r] < E ? i : -1;
  }
  if (lane == 0) *p.post_pad = total;
}

// ---------------------------------------------------------------------------
// spread regime: small batches and small prefills (kTinyMaxRoutes + 1 up to
// kSpreadMaxRoutes routes), one launch over many CTAs.
//
// CTA c owns the tile of 32 * R consecutive routes starting at c * 32 * R.
// Every CTA counts ALL the routes itself (the ids are a few KB and come from
// L2 after the first CTA touches them): per expert the total, and the routes
// before its tile. So no CTA waits for another - no second launch, no grid
// barrier - and each works the whole layout out from its own counts:
//   load     every route (kSpreadRoutesPerThread a thread, all in flight);
//            warp 0 also loads the tile's routes
//   count    shared-memory atomics: cnt[e] for all routes, before[e] for the
//            routes before the tile; warp 0 ranks the tile's routes among
//            equal experts with ballots meanwhile (as the tiny kernel does)
//   scan     padded totals -> seg[] (block scan)
//   scatter  warp 0: route i goes to seg[e] + before[e] + rank in the tile
//   fill     lane group g of the grid (groups of up to 32 lanes, sized to
//            the block's padding): padding slots and expert ids of experts
//            g, g + groups, ...; every thread: its share of the tail
// The writes of different CTAs never overlap, so nothing has to be ordered.
// (The one-CTA alternative, which ranks every route in one SM behind five
// barriers, measured 6.6 us at 2048 routes on the H100: RESULTS.md.)
// ---------------------------------------------------------------------------
constexpr int kSpreadRoutesPerThread = 8;

// Shared memory of the spread kernel, in ints: cnt[E] | before[E] | seg[E + 1]
// | map[E] (a copy of expert_map when it applies while counting).
__host__ __device__ constexpr int spread_smem_ints(int E, bool map_in) {
  return 3 * E + 1 + (map_in ? E : 0);
}

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
  // The map is looked up once per route and CTA, so it is copied to shared
  // memory alongside the id loads instead of being read from global memory
  // after them. (H100, 2048 routes, E=256: 4.38 us with the copy, 4.39
  // without it, 3.72 with no map at all: most of the cost of a map lies
  // elsewhere, not found yet.)
  if (p.map_in)
    for (int e = threadIdx.x; e < E; e += blockDim.x) map[e] = __ldg(p.map + e);
  zero_ints(cnt, 2 * E);
  __syncthreads();
  // count
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
  int key[R], rank[R], count[R];
  if (warp == 0) {
#pragma unroll
    for (int r = 0; r < R; ++r) key[r] = lo + r * 32 + lane < n ? bin_of(own[r], p, map) : E;
    if (wide_keys(E)) tiny_ranks<13>(key, rank, count);
    else tiny_ranks<9>(key, rank, count);
  }
  __syncthreads();
  // scan
  scan_segments(cnt, seg, p);
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
  // fill: inside the segments, one expert per group of G lanes at a time
  // (G = p.spread_group, a power of two <= 32 covering a block's padding)
  const int gthread = blockIdx.x * blockDim.x + threadIdx.x, gstride = gridDim.x * blockDim.x;
  const int G = p.spread_group, j = gthread & (G - 1);
  const int groups = gstride >> p.spread_group_log2;
  for (int e = gthread >> p.spread_group_log2; e < E; e += groups) {
    const int s = seg[e], t = min(seg[e + 1], p.sorted_size);  // (min: a guard)
    for (int x = s + cnt[e] + j; x < t; x += G) p.sorted_ids[x] = n;
    const int b_end = min(p.div_block.div(t), p.expert_ids_size);
    int b = p.div_block.div(s) + j;
    if (b < b_end) {
      const int owner = p.map_out ? __ldg(p.map + e) : e;
      for (; b < b_end; b += G) p.expert_ids[b] = owner;
    }
  }
  // fill: past the last segment
  const int total = seg[E];
  fill_range(p.sorted_ids, total, p.sorted_size, n, gthread, gstride);
  fill_range(p.expert_ids, p.div_block.div(total), p.expert_ids_size, tail_expert(p), gthread,
             gstride);
  if (gthread == 0) *p.post_pad = total;
}

// count (tiled): tile histogram -> tile_hist[tile][e]. Order does not matter
// here: one shared row, one shared-memory atomic per route, loads all in
// flight. (Aggregating equal experts of a warp with ballots first, to save
// atomics, cost 8-14% more time on the H100: the ballots are more
// instructions than the atomics they save at realistic expert counts.)
template <typename IdT>
__global__ void __launch_bounds__(kThreads)
    count_tiles_kernel(const IdT* __restrict__ ids, Params p) {
  extern __shared__ int hist[];
  const int E = p.num_experts;
  const int lo = blockIdx.x * p.tile_routes;
  const int hi = min(p.numel, lo + p.tile_routes);
  for (int e = threadIdx.x; e < E; e += blockDim.x) hist[e] = 0;
  fill_padding(blockIdx.x, gridDim.x, p);  // the scatter kernel runs after this one
  __syncthreads();
  for_each_bin(ids, lo, hi, p, [&](int, int e) {
    if (e < E) atomicAdd(&hist[e], 1);
  });
  __syncthreads();
  int* out = p.tile_hist + static_cast<size_t>(blockIdx.x) * E;
  for (int e = threadIdx.x; e < E; e += blockDim.x) out[e] = hist[e];
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
// thread are issued before any is added. (4096x10 routes, E = 512, 32 tiles
// of 512 threads: one expert a thread and 4 loads in flight made 8 dependent
// round trips; now 1.)
constexpr int kPrefixInFlight = 8;

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
template <typename IdT, bool kPrefixHere>
__global__ void __launch_bounds__(kThreads, 1)
    scatter_tiles_kernel(const IdT* __restrict__ ids, Params p) {
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
  stage_bins(ids, lo, hi, bins, p);
  __syncthreads();
  if (kPrefixHere) {
    if (p.prefix_cols == E) tile_prefix_here<1>(p, tile, seg, cnt);
    else tile_prefix_here<4>(p, tile, seg, cnt);
  }
  const Chunk chunk = warp_chunk(hi - lo, warp, p.warp_routes);
  if (warp < W) count_chunk(bins, chunk, hist + warp * E, E);
  __syncthreads();
  __shared__ int part[kThreads];
  warp_prefixes(hist, seg, cnt, false, part, p);
  __syncthreads();
  scan_segments(cnt, seg, p);
  __syncthreads();
  fill_expert_ids(seg, tile, p.num_tiles, p);
  if (warp < W) scatter_chunk(bins, chunk, lo, seg, hist + warp * E, p);
}

// ---------------------------------------------------------------------------
// Launch-size choices, all here.
// ---------------------------------------------------------------------------
// Tiny regime (n <= kTinyMaxRoutes): CTAs of kTinyThreads threads, as many as
// give each thread about kTinySlotsPerThread slots of the output to fill
// (decode: one CTA; a large E * block_size spreads its padding over SMs).
// Every warp recomputes the layout, so fewer warps is cheaper (H100, 1x8
// routes, E=256: 2.93 us with 4 warps, 3.31 with 8); 4 warps still issue the
// padding stores of a typical decode call (B=16: 3848 slots) in eight
// 16-byte stores a thread.
constexpr int kTinyThreads = 128;
constexpr int kTinySlotsPerThread = 64;
// Spread: every CTA loads all routes at once, kSpreadRoutesPerThread a
// thread, and owns a tile of 32 or 64 of them (one CTA per SM at most: each
// CTA re-reads all the routes, so more CTAs than SMs would only queue). The
// smallest tile is fastest: H100, 256 routes, E=128: 3.12 us with tiles of
// 32, 3.54 with 64; 2048 routes, E=256: 3.75 vs 3.98; with tiles of 128 and
// a 4-group rank: 4.62. Above this size the tiled kernels win.
constexpr int kSpreadMaxRoutes = kSpreadRoutesPerThread * kThreads;
// Spread, segment fill: log2 of the lanes per expert, the power of two >=
// block_size - 1 (a segment's padding) capped at a warp; 0 when B is 1.
int spread_group_log2(int block_size) {
  int g = 0;
  while (g < 5 && (1 << g) < block_size - 1) ++g;
  return g;
}
// Tiled: as many tiles as SMs (one wave), but at least kMinTileRoutes routes
// a tile (each CTA has a fixed cost: its expert scan), at most
// kMaxTileRoutes (the tile's routes are staged in shared memory), and few
// enough that each CTA can read all tiles' counts itself (tiles * E <=
// kPrefixHereMaxCells, saving the scan launch) unless that would break the
// tile-size cap or a full wave has over 1.5x as many tiles. H100, scan kernel
// and one wave instead of 64 tiles: 16384x8 routes, E=256: 11.55 -> 10.73 us;
// 65536x8: 23.8 -> 20.2 us; but 4096x10, E=512 (40 tiles instead of 32):
// 10.11 -> 10.39 us.
constexpr int kMinTileRoutes = 1024;
// Without the scan kernel, tiles may be smaller: H100, 4096x8 routes, E=128:
// 64 tiles of 512 routes 7.47 us, 32 of 1024 8.2 us; 2048x8, E=256: 7.4 vs
// 8.1; 8192x2, E=8: 7.1 vs 7.7. (The same minimum for the scan kernel's
// choice sent 4096x10, E=512, to 80 tiles and the scan: 9.9 vs 9.4 us.)
constexpr int kMinTileRoutesHere = 512;
constexpr int kMaxTileRoutes = 16384;
constexpr int kPrefixHereMaxCells = 16384;
// Tiled CTAs: threads sized to the tile, this many routes each, in [256, 1024].
constexpr int kTiledRoutesPerThread = 4;
// Routes per histogram warp of a tile. Fewer routes a warp shorten its
// dependent count/scatter chain; fewer warps shorten the per-expert prefix
// pass (one step per warp row). H100 (then a one-CTA kernel): 128 beat 64
// from 512 routes up (2048 routes: 6.92 -> 6.54 us).
constexpr int kRoutesPerWarp = 128;
// Static shared memory of any kernel here (scan_segments' warp totals, the
// scan kernel's table), kept out of the dynamic budget.
constexpr int kStaticSmemBytes = 8 * 1024;

// Dynamic shared memory a kernel may use without opting in.
constexpr size_t kDefaultSmemBytes = 48 * 1024 - kStaticSmemBytes;

// Lets kKernel use all the dynamic shared memory a block may opt into; the
// attribute is set once per kernel and device (one flag set per kernel: the
// template parameter is the kernel itself).
template <auto kKernel>
cudaError_t allow_smem(int device, int smem_optin_bytes) {
  static std::atomic<uint64_t> done{0};  // bit d: set on device d
  const uint64_t bit = uint64_t{1} << (device & 63);
  if (done.load(std::memory_order_relaxed) & bit) return cudaSuccess;
  const cudaError_t err = cudaFuncSetAttribute(
      kKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_optin_bytes - kStaticSmemBytes);
  if (err == cudaSuccess) done.fetch_or(bit, std::memory_order_relaxed);
  return err;
}

Params to_params(const KernelParams& k, const LaunchPlan& plan) {
  Params p{};
  static_cast<KernelParams&>(p) = k;
  p.tile_hist = k.scratch;
  p.totals = k.scratch ? k.scratch + static_cast<size_t>(plan.num_tiles) * k.num_experts
                       : nullptr;
  p.hist_warps = plan.hist_warps;
  p.tile_routes = plan.tile_routes;
  p.num_tiles = plan.num_tiles;
  const int E = k.num_experts, W = plan.hist_warps;
  p.warp_routes = std::max(32, ((plan.tile_routes + W - 1) / W + 31) & ~31);
  const int nt = plan.threads;
  p.experts_per_thread = (E + nt - 1) / nt;
  p.row_groups = E >= nt ? 1 : std::min(W, nt / E);
  p.rows_per_group = (W + p.row_groups - 1) / p.row_groups;
  // 16-byte loads of 4 experts need rows of a multiple of 4 ints and an
  // aligned scratch (torch's allocator aligns to 512 bytes).
  const bool vec4 = E % 4 == 0 && reinterpret_cast<uintptr_t>(k.scratch) % 16 == 0;
  p.prefix_cols = vec4 ? E / 4 : E;
  // Groups beyond one per kPrefixInFlight tiles only add shared atomics, on
  // few addresses when E is small (H100, 8192x2 routes, E=8, 16 tiles: the
  // uncapped version took 7.74 us, the old per-expert loop 7.30).
  p.tile_groups = std::max(1, std::min(nt / p.prefix_cols,
                                       (plan.num_tiles + kPrefixInFlight - 1) / kPrefixInFlight));
  p.div_prefix_cols = FastDiv::make(static_cast<uint32_t>(p.prefix_cols));
  p.spread_group_log2 = spread_group_log2(k.block_size);
  p.spread_group = 1 << p.spread_group_log2;
  p.div_block = FastDiv::make(static_cast<uint32_t>(k.block_size));
  p.div_experts = FastDiv::make(static_cast<uint32_t>(E));
  return p;
}

template <auto kKernel, typename IdT>
cudaError_t launch_spread(const IdT* ids, const Params& p, const LaunchPlan& l, int device, int optin,
                          cudaStream_t stream) {
  cudaError_t err;
  if (l.smem_bytes > kDefaultSmemBytes && (err = allow_smem<kKernel>(device, optin)) != cudaSuccess)
    return err;
  kKernel<<<l.num_tiles, l.threads, l.smem_bytes, stream>>>(ids, p);
  return cudaGetLastError();
}

template <typename IdT>
cudaError_t launch_typed(const IdT* ids, const Params& p, const LaunchPlan& l, int device,
                         int optin, cudaStream_t stream) {
  cudaError_t err;
  if (l.regime == Regime::kTiny) {
    if (p.numel <= 32)
      tiny_kernel<IdT, 1><<<l.num_tiles, l.threads, 0, stream>>>(ids, p);
    else
      tiny_kernel<IdT, kTinyRoutesPerLane><<<l.num_tiles, l.threads, 0, stream>>>(ids, p);
    return cudaGetLastError();
  }
  if (l.regime == Regime::kSpread) {
    if (l.tile_routes == 32) return launch_spread<spread_kernel<IdT, 1>>(ids, p, l, device, optin, stream);
    return launch_spread<spread_kernel<IdT, 2>>(ids, p, l, device, optin, stream);
  }
  count_tiles_kernel<IdT><<<l.num_tiles, l.threads, sizeof(int) * p.num_experts, stream>>>(ids, p);
  if ((err = cudaGetLastError()) != cudaSuccess) return err;
  if (l.regime == Regime::kTiledScan) {
    scan_tiles_kernel<<<(p.num_experts + 31) / 32, kThreads, 0, stream>>>(p);
    if ((err = cudaGetLastError()) != cudaSuccess) return err;
    constexpr auto k = scatter_tiles_kernel<IdT, false>;
    if (l.smem_bytes > kDefaultSmemBytes && (err = allow_smem<k>(device, optin)) != cudaSuccess)
      return err;
    k<<<l.num_tiles, l.threads, l.smem_bytes, stream>>>(ids, p);
  } else {
    constexpr auto k = scatter_tiles_kernel<IdT, true>;
    if (l.smem_bytes > kDefaultSmemBytes && (err = allow_smem<k>(device, optin)) != cudaSuccess)
      return err;
    k<<<l.num_tiles, l.threads, l.smem_bytes, stream>>>(ids, p);
  }
  return cudaGetLastError();
}

}  // namespace

LaunchPlan plan_launch(int numel, int num_experts, int block_size, int sorted_size, bool map_in,
                       int num_sms, int smem_optin_bytes) {
  const int n = numel, E = num_experts;
  LaunchPlan l{};
  l.threads = kThreads;
  l.fits = true;
  if (n <= kTinyMaxRoutes) {
    l.regime = Regime::kTiny;
    l.tile_routes = n;
    l.threads = kTinyThreads;
    l.hist_warps = 1;  // (unused)
    const int64_t per_cta = int64_t{kTinyThreads} * kTinySlotsPerThread;
    l.num_tiles = static_cast<int>(
        std::min<int64_t>(num_sms, std::max<int64_t>(1, (sorted_size + per_cta - 1) / per_cta)));
    return l;
  }
  {
    int tile = 32;
    while (tile < 64 && (n + tile - 1) / tile > num_sms) tile *= 2;
    const size_t smem = sizeof(int) * static_cast<size_t>(spread_smem_ints(E, map_in));
    if (n <= kSpreadMaxRoutes && (n + tile - 1) / tile <= num_sms &&
        smem + kStaticSmemBytes <= static_cast<size_t>(smem_optin_bytes)) {
      l.regime = Regime::kSpread;
      l.tile_routes = tile;
      l.num_tiles = (n + tile - 1) / tile;
      l.hist_warps = 1;  // (unused)
      l.smem_bytes = smem;
      // Threads for the loads, and enough lane groups for about one expert
      // each in the segment fill (a walk over many experts per group was
      // the cost of few-CTA launches with many experts).
      const int64_t lanes = int64_t{E} << spread_group_log2(block_size);
      const int want = static_cast<int>(std::max<int64_t>(
          (n + kSpreadRoutesPerThread - 1) / kSpreadRoutesPerThread,
          (lanes + l.num_tiles - 1) / l.num_tiles));
      l.threads = 128;
      while (l.threads < want && l.threads < kThreads) l.threads <<= 1;
      return l;
    }
  }
  {
    const int by_cells = std::max(1, kPrefixHereMaxCells / E);
    const int by_routes = std::min(num_sms, (n + kMinTileRoutes - 1) / kMinTileRoutes);
    const int by_routes_here = std::min(num_sms, (n + kMinTileRoutesHere - 1) / kMinTileRoutesHere);
    // Few tiles with the prefix in each CTA, or one wave of tiles and the
    // scan kernel when that gives far more tiles (its launch then pays off).
    int tiles = by_routes * 2 > by_cells * 3 ? by_routes : std::min(by_routes_here, by_cells);
    tiles = std::max({tiles, 1, (n + kMaxTileRoutes - 1) / kMaxTileRoutes});
    // Tiles of a multiple of 32 routes, so warp groups stay aligned.
    l.tile_routes = static_cast<int>(((static_cast<int64_t>(n) + tiles - 1) / tiles + 31) & ~31);
    l.num_tiles = static_cast<int>((static_cast<int64_t>(n) + l.tile_routes - 1) / l.tile_routes);
    l.regime = static_cast<int64_t>(l.num_tiles) * E <= kPrefixHereMaxCells
                   ? Regime::kTiledPrefixHere
                   : Regime::kTiledScan;
    l.scratch_ints = static_cast<size_t>(l.num_tiles + 1) * E;
    // Idle warps would still run every phase's bookkeeping.
    const int want = l.tile_routes / kTiledRoutesPerThread;
    l.threads = 256;
    while (l.threads < want && l.threads < kThreads) l.threads <<= 1;
  }
  // As many histogram rows as shared memory and the work per warp allow.
  const int budget_ints = (smem_optin_bytes - kStaticSmemBytes) / static_cast<int>(sizeof(int));
  const int by_smem = (budget_ints - (2 * E + 1) - l.tile_routes) / E;
  const int by_work = std::max(1, l.tile_routes / kRoutesPerWarp);
  l.fits = by_smem >= 1;
  l.hist_warps = std::max(1, std::min({l.threads / 32, by_smem, by_work}));
  l.smem_bytes = sizeof(int) * static_cast<size_t>(smem_ints(E, l.hist_warps, l.tile_routes));
  return l;
}

namespace {

template <auto... kKernels>
cudaError_t query_all() {
  cudaFuncAttributes attr;
  cudaError_t err = cudaSuccess;
  // Left to right; stops at the first error.
  ((err == cudaSuccess ? (err = cudaFuncGetAttributes(&attr, kKernels)) : err), ...);
  return err;
}

template <typename IdT>
cudaError_t preload_typed() {
  return query_all<tiny_kernel<IdT, 1>, tiny_kernel<IdT, kTinyRoutesPerLane>,
                   spread_kernel<IdT, 1>, spread_kernel<IdT, 2>, count_tiles_kernel<IdT>,
                   scatter_tiles_kernel<IdT, true>, scatter_tiles_kernel<IdT, false>>();
}

}  // namespace

cudaError_t preload_kernels() {
  cudaError_t err = preload_typed<int32_t>();
  if (err == cudaSuccess) err = preload_typed<int64_t>();
  if (err == cudaSuccess) err = query_all<scan_tiles_kernel>();
  return err;
}

cudaError_t launch_align(const KernelParams& k, const LaunchPlan& plan, int device,
                         int smem_optin_bytes, cudaStream_t stream) {
  const Params p = to_params(k, plan);
  if (k.ids_int64)
    return launch_typed(static_cast<const int64_t*>(k.ids), p, plan, device, smem_optin_bytes,
                        stream);
  return launch_typed(static_cast<const int32_t*>(k.ids), p, plan, device, smem_optin_bytes,
                      stream);
}

}  // namespace vllm_moe_align
