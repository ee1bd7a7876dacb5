// Tiny regime: at most kTinyMaxRoutes routes (decode batches), one launch.
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
#pragma once

#include "common.cuh"

namespace vllm_moe_align {
namespace {

// A padded segment of <= kTinyMaxRoutes routes is < 2048 slots (block_size
// <= 1024), so (key, padded size) pack into one int for the shuffles.
constexpr int kTinyPadBits = 11;
// Map entries a lane holds in registers (maps of up to 256 experts).
constexpr int kTinyMapRegs = 8;

// A segment of the tiny regime has at most kTinyMaxRoutes routes, so at most
// that many blocks: kTinyBlockBits bits hold any segment's block count.
constexpr int kTinyBlockBits = 7;
static_assert(kTinyMaxRoutes < (1 << kTinyBlockBits), "a segment's blocks must fit kTinyBlockBits");

// Two routes a lane: rank[r] and count[r] as tiny_ranks, and below[r][g], the
// lanes whose route of group g has a smaller key than route (r, lane). The
// same ballots (key_ballots) give both: walking the bits from the top, a lane
// is below while its higher bits equal ours and it has a 0 where we have a 1.
template <int kBits, int R>
__device__ __forceinline__ void tiny_ranks_below(const int (&key)[R], int (&rank)[R],
                                                 int (&count)[R], unsigned (&below)[R][R]) {
  const unsigned lower = (1u << (threadIdx.x & 31)) - 1u;
  unsigned set[R][kBits];
  key_ballots(key, set);
#pragma unroll
  for (int r = 0; r < R; ++r) {
    rank[r] = count[r] = 0;
#pragma unroll
    for (int g = 0; g < R; ++g) {
      unsigned equal = 0xffffffffu, less = 0u;
#pragma unroll
      for (int b = kBits - 1; b >= 0; --b) {
        const bool one = (key[r] >> b) & 1;
        less |= one ? equal & ~set[g][b] : 0u;
        equal &= one ? set[g][b] : ~set[g][b];
      }
      below[r][g] = less;
      add_peers(equal, r, g, lower, rank, count);
    }
  }
}

// Entry x of a map held in registers (lane l holds entries l, l + 32, ...):
// one shuffle per register, all kRegs of them in flight together, no branch
// between them.
template <int kRegs>
__device__ __forceinline__ int map_lookup(const int (&mreg)[kTinyMapRegs], int x) {
  int local = -1;
#pragma unroll
  for (int k = 0; k < kRegs; ++k) {
    const int m = __shfl_sync(0xffffffffu, mreg[k], x & 31);
    if ((x >> 5) == k) local = m;
  }
  return local;
}

// Launch bounds (kThreads, 1) on the tiny and spread kernels: with the
// block size alone the compiler held them to 32 registers and spilled; the
// occupancy that would buy is of no use to launches of one CTA per SM.
template <typename IdT, int R>
__global__ void __launch_bounds__(kThreads, 1) tiny_kernel(const IdT* __restrict__ ids, Params p) {
  const int lane = threadIdx.x & 31;
  const int E = p.num_experts, B = p.block_size, n = p.numel;
  await_stream_inputs();
  // load
  IdT raw[R];
#pragma unroll
  for (int r = 0; r < R; ++r) raw[r] = r * 32 + lane < n ? ids[r * 32 + lane] : IdT(0);
  // Reads that need no count - the tail's expert id, and with a map applied
  // to the output each segment's owner - go out beside the ids at one route
  // a lane (decode), not after the scan. At two routes a lane the kernel
  // keeps them after the scan, as it was: a build with the early reads (and
  // bins_of) there ran about 1% slower at 48 and 64 routes (KERNEL_NOTES.md).
  constexpr bool kEarlyReads = R == 1;
  int tail = 0;
  if constexpr (kEarlyReads) tail = tail_expert(p);
  // Mapping while counting: a map of up to kTinyMapRegs * 32 entries is
  // loaded into registers alongside the ids (lane l holds entries l, l + 32,
  // ...) and looked up with shuffles, so the lookup is not a second global
  // round trip after the ids. (A shared-memory copy needs a barrier and is
  // slower than both this and a lookup in global memory.)
  const bool map_regs = p.map_in && E <= 32 * kTinyMapRegs;  // warp-uniform
  int mreg[kTinyMapRegs];
  if (map_regs) {
    // Unpredicated loads, index clamped to the last entry: the loads issue
    // back to back from one pointer; entries past E are never looked up.
    const int* const map = p.map;
#pragma unroll
    for (int k = 0; k < kTinyMapRegs; ++k) mreg[k] = __ldg(map + min(k * 32 + lane, E - 1));
  }
  int key[R];
  bool here[R];
#pragma unroll
  for (int r = 0; r < R; ++r) here[r] = r * 32 + lane < n;
  if (!map_regs) {  // no map, or one too large for the registers
    if constexpr (kEarlyReads) {
      bins_of(raw, here, p, p.map, key);
    } else {
#pragma unroll
      for (int r = 0; r < R; ++r) key[r] = here[r] ? bin_of(raw[r], p, p.map) : E;
    }
  } else {
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const long long id = static_cast<long long>(raw[r]);
      const bool valid = here[r] && id >= 0 && id < E;
      const int x = valid ? static_cast<int>(id) : 0;
      // only the registers a map of E entries fills (E is uniform; at two
      // routes a lane all of them, as it was, with the late reads)
      const int local = kEarlyReads && E <= 64    ? map_lookup<2>(mreg, x)
                        : kEarlyReads && E <= 128 ? map_lookup<4>(mreg, x)
                                                  : map_lookup<kTinyMapRegs>(mreg, x);
      key[r] = valid && local >= 0 && local < E ? local : E;
    }
  }
  // The expert id each segment's blocks get: with a map applied to the
  // output, looked up now (index 0 for no route, which has no segment), in
  // flight while the routes are ranked and the segments scanned.
  int owner[R];
  if constexpr (kEarlyReads) {
#pragma unroll
    for (int r = 0; r < R; ++r)
      owner[r] = p.map_out ? __ldg(p.map + (key[r] < E ? key[r] : 0)) : key[r];
  }
  // count (with two routes a lane, also which lanes hold smaller keys: the
  // scan's input)
  int rank[R], count[R];
  unsigned below[R][R];
  if constexpr (R == 1) {
    if (wide_keys(E)) tiny_ranks<13>(key, rank, count);
    else tiny_ranks<9>(key, rank, count);
  } else {
    if (wide_keys(E)) tiny_ranks_below<13>(key, rank, count, below);
    else tiny_ranks_below<9>(key, rank, count, below);
  }
  // scan: a segment's start is the padded size of every smaller key's segment
  int blocks[R], padded[R], total = 0;
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const bool leader = key[r] < E && rank[r] == 0;
    blocks[r] = leader ? p.div_block.div(count[r] + B - 1) : 0;
    padded[r] = blocks[r] * B;
    total += padded[r];
  }
  // scan: start[r] sums the padded segments of the keys below key[r].
  int start[R] = {};
  if constexpr (R == 1) {
    // Only lanes below n hold a route, so only they can lead a segment: the
    // lanes are read 8 at a time (8 independent shuffles in flight), and a
    // decode batch of up to 8 routes reads 8 lanes, not 32. A lane without a
    // route adds 0.
    const int lanes = min(n, 32);
    const int pack = (key[0] << kTinyPadBits) | padded[0];
#pragma unroll
    for (int base = 0; base < 32; base += 8) {
      if (base >= lanes) break;  // (uniform)
#pragma unroll
      for (int src = base; src < base + 8; ++src) {
        const int v = __shfl_sync(0xffffffffu, pack, src);
        start[0] += (v >> kTinyPadBits) < key[0] ? v & ((1 << kTinyPadBits) - 1) : 0;
      }
    }
    total = warp_sum(total);
  } else {
    // With two routes a lane (33 to 64 routes) every lane holds a route, so
    // reading the lanes one by one takes 64 shuffles. Ballots instead: one
    // per bit of each group's block counts (a segment's padded size in
    // blocks, on its leader; 0 elsewhere), and then start[r] is B times the
    // block counts of the lanes below it, bit by bit, and the total B times
    // those of all lanes.
    unsigned bits[R][kTinyBlockBits];
#pragma unroll
    for (int g = 0; g < R; ++g)
#pragma unroll
      for (int j = 0; j < kTinyBlockBits; ++j)
        bits[g][j] = __ballot_sync(0xffffffffu, (blocks[g] >> j) & 1);
    int all = 0;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      int before = 0;
#pragma unroll
      for (int g = 0; g < R; ++g)
#pragma unroll
        for (int j = 0; j < kTinyBlockBits; ++j) before += __popc(bits[g][j] & below[r][g]) << j;
      start[r] = before * B;
    }
#pragma unroll
    for (int g = 0; g < R; ++g)
#pragma unroll
      for (int j = 0; j < kTinyBlockBits; ++j) all += __popc(bits[g][j]) << j;
    total = all * B;
  }
  const int used = p.div_block.div(total);
  // fill: past the last segment, all CTAs
  const int gthread = blockIdx.x * blockDim.x + threadIdx.x, gstride = gridDim.x * blockDim.x;
  fill_range(p.sorted_ids, total, p.sorted_size, n, gthread, gstride);
  fill_range(p.expert_ids, used, p.expert_ids_size, kEarlyReads ? tail : tail_expert(p), gthread,
             gstride);
  // fill: inside each segment. Every warp knows every segment (lane order),
  // so global warp w takes the slots and blocks w, w + warps, ... of each
  // segment: no loop over segments, and the CTAs share the work.
  const int gwarp = gthread >> 5, gwarps = gstride >> 5;
#pragma unroll
  for (int r = 0; r < R; ++r) {
    if (padded[r] == 0) continue;
    // (the bounds always hold, by the output sizes; they are guards)
    const int x_end = min(start[r] + padded[r], p.sorted_size);
#pragma unroll 1  // (see fill_range)
    for (int x = start[r] + count[r] + gwarp; x < x_end; x += gwarps) p.sorted_ids[x] = n;
    const int b0 = p.div_block.div(start[r]);
    const int b_end = min(b0 + p.div_block.div(padded[r]), p.expert_ids_size);
    if (b0 + gwarp < b_end) {
      const int id = kEarlyReads ? owner[r] : p.map_out ? __ldg(p.map + key[r]) : key[r];
#pragma unroll 1
      for (int b = b0 + gwarp; b < b_end; b += gwarps) p.expert_ids[b] = id;
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

// Up to 32 routes, one route a lane (R = 1): half the ballots and shuffles.
template <typename IdT>
cudaError_t launch_typed(const IdT* ids, const Params& p, const LaunchPlan& l, int device,
                         cudaStream_t stream) {
  if (p.numel <= 32)
    return launch_kernel<tiny_kernel<IdT, 1>>(l.num_tiles, l.threads, 0, device, stream, ids, p);
  return launch_kernel<tiny_kernel<IdT, kTinyRoutesPerLane>>(l.num_tiles, l.threads, 0, device,
                                                             stream, ids, p);
}

template <typename IdT>
cudaError_t preload_typed() {
  return query_all<tiny_kernel<IdT, 1>, tiny_kernel<IdT, kTinyRoutesPerLane>>();
}

}  // namespace
}  // namespace vllm_moe_align
