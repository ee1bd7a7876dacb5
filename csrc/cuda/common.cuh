// The CUDA kernels compute a stable counting sort of the routes by expert,
// every output element written by the kernels themselves (no memset, no fill
// launch), in four named phases:
//
//   count    histograms of the routes per expert (shared memory)
//   scan     padded per-expert totals -> segment starts (block-wide scan)
//   fill     padding slots of sorted_ids, expert_ids, num_tokens_post_pad
//   scatter  each route goes to  segment start + routes of its expert before
//            it  (ranks among equal experts in a 32-route group come from
//            ballots, lower lanes first, so segments ascend)
//
// Size regimes, chosen by plan_launch (plan.cpp): tiny (tiny.cuh), spread
// (spread.cuh), tiled (tiled.cuh); each file describes its kernels, and
// <regime>_int32.cu and <regime>_int64.cu compile them per id type.
//
// This header: device helpers shared by the regimes, the parameters the
// kernels read (Params, built once per call on the host by to_params), and
// the host helpers that launch them. Everything here has internal linkage:
// each kernel file gets its own copy.
#pragma once

#include "kernels.h"

#include <algorithm>
#include <atomic>
#include <cstdint>

namespace vllm_moe_align {
namespace {

constexpr int kWarps = kThreads / 32;

// Tiled, prefix in each CTA: tile rows a thread loads before it adds any
// (tile_prefix_here in tiled.cuh; to_params sizes the thread groups by it).
constexpr int kPrefixInFlight = 8;

// Division by a divisor fixed for the whole launch, by multiply and shift
// (Granlund-Montgomery). GPUs have no integer divide instruction: a division
// by a run-time value compiles to ~25 dependent instructions, which sit on
// the critical path of every phase that maps slots to blocks or experts.
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

// What the kernels read, by value (Params): one call's problem and buffers
// (AlignProblem and AlignBuffers, the sizes narrowed to int: the kernels
// index in int32, which the limits in checks.h allow), the launch plan's
// sizes, and everything derived from them once on the host (so the kernels
// divide by run-time values only through FastDiv). to_params fills it.
//
// Its type is the kernels' parameter layout, which their machine code
// follows: the call's part is a base (ParamsHead) rather than fields of
// Params itself, because the compiler emits different (if equivalent)
// instructions for the flat struct; fields the kernels do not read (ids,
// ids_int64, scratch: the ids reach the kernels typed, as an argument of
// their own) keep their places so the others keep their offsets.
struct ParamsHead {
  const void* ids;  // int32 or int64 routes, contiguous
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

struct Params : ParamsHead {
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
  // spread: lanes per expert when filling segments, and its log2 (both
  // passed, so the kernel does not derive one from the other).
  int spread_group;
  int spread_group_log2;
  FastDiv div_block;        // / block_size
  FastDiv div_experts;      // / num_experts
};

// Bins of N routes at once. A route's bin is its expert (the local id when
// mapping while counting), or E when it is dropped (id out of range, mapped to
// -1, or not `here`). All N map lookups are in flight together: each reads an
// index that is always valid (0 for an id out of range, whose bin is E
// anyway), outside any branch, and none is used before all are issued; a
// lookup per route behind its own range check would be N round trips one
// after another. `map` is p.map or a copy of it (shared memory).
// kBinMap: `map` holds bins already (the local id, or E where the map drops
// the expert), so the lookup is the bin.
template <bool kBinMap = false, int N, typename IdT>
__device__ __forceinline__ void bins_of(const IdT (&raw)[N], const bool (&here)[N], const Params& p,
                                        const int* map, int (&bin)[N]) {
  const int E = p.num_experts;
  bool valid[N];
  int local[N];
#pragma unroll
  for (int u = 0; u < N; ++u) {
    const long long id = static_cast<long long>(raw[u]);
    valid[u] = here[u] && id >= 0 && id < E;
    local[u] = valid[u] ? static_cast<int>(id) : 0;
  }
  if (p.map_in) {  // uniform: every thread takes the same side
#pragma unroll
    for (int u = 0; u < N; ++u) local[u] = map[local[u]];
    if constexpr (!kBinMap) {
#pragma unroll
      for (int u = 0; u < N; ++u) valid[u] = valid[u] && local[u] >= 0 && local[u] < E;
    }
  }
#pragma unroll
  for (int u = 0; u < N; ++u) bin[u] = valid[u] ? local[u] : E;
}

// The bin of one route, its map lookup behind its own range check: the form
// for the passes where builds with bins_of ran slower (the tiny kernel at two
// routes a lane, the tiled load pass, the spread count with several experts
// a thread). `map` as bins_of.
template <typename IdT>
__device__ __forceinline__ int bin_of(IdT raw, const Params& p, const int* map) {
  const long long id = static_cast<long long>(raw);
  if (id < 0 || id >= p.num_experts) return p.num_experts;
  if (!p.map_in) return static_cast<int>(id);
  const int local = map[id];
  return (local >= 0 && local < p.num_experts) ? local : p.num_experts;
}

// fused_globalize_align_block_size_out (globalize.cu, and tiled.cuh's
// kGlobalize kernels): the routes of real rows are the first rows received x
// topk (real_routes, from psum_recv_per_rank's last entry, read on the
// device); route i of local id `local` (its id read as a 32-bit int, as
// vLLM's kernel reads it) is kept when the id is in [0, L), its global id
// local + rank_offset is below global_experts and its row is real.
__device__ __forceinline__ long long globalize_real_routes(const int32_t* psum_last, int topk) {
  return static_cast<long long>(__ldg(psum_last)) * topk;
}
__device__ __forceinline__ bool globalize_keeps(int local, int i, long long real_routes,
                                                int local_experts, long long rank_offset,
                                                long long global_experts) {
  return local >= 0 && local < local_experts && local + rank_offset < global_experts &&
         i < real_routes;
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

__device__ __forceinline__ bool wide_keys(int E) { return E >= 512; }

// The sum of v over the warp, in every lane: one reduction instruction from
// sm_80 on (five dependent shuffles before it).
__device__ __forceinline__ int warp_sum(int v) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  return __reduce_add_sync(0xffffffffu, v);
#else
#pragma unroll
  for (int d = 16; d > 0; d >>= 1) v += __shfl_xor_sync(0xffffffffu, v, d);
  return v;
#endif
}

// set[g][b]: the lanes whose route of group g has bit b of its key set. One
// ballot per key bit and route group, all independent.
template <int kBits, int R>
__device__ __forceinline__ void key_ballots(const int (&key)[R], unsigned (&set)[R][kBits]) {
#pragma unroll
  for (int g = 0; g < R; ++g)
#pragma unroll
    for (int b = 0; b < kBits; ++b) set[g][b] = __ballot_sync(0xffffffffu, (key[g] >> b) & 1);
}

// Adds route (r, lane)'s peers of group g (the lanes whose route of group g
// has its key) to count[r], and those before it to rank[r]: all of an
// earlier group, the lower lanes of its own.
template <int R>
__device__ __forceinline__ void add_peers(unsigned peers, int r, int g, unsigned lower,
                                          int (&rank)[R], int (&count)[R]) {
  count[r] += __popc(peers);
  if (g < r) rank[r] += __popc(peers);
  if (g == r) rank[r] += __popc(peers & lower);
}

// rank[r]: routes before route (r, lane) with the same key; count[r]: routes
// with its key.
template <int kBits, int R>
__device__ __forceinline__ void tiny_ranks(const int (&key)[R], int (&rank)[R], int (&count)[R]) {
  const unsigned lower = (1u << (threadIdx.x & 31)) - 1u;
  unsigned set[R][kBits];
  key_ballots(key, set);
#pragma unroll
  for (int r = 0; r < R; ++r) {
    rank[r] = 0;
    count[r] = 0;
#pragma unroll
    for (int g = 0; g < R; ++g) {
      unsigned peers = 0xffffffffu;
#pragma unroll
      for (int b = 0; b < kBits; ++b) peers &= ((key[r] >> b) & 1) ? set[g][b] : ~set[g][b];
      add_peers(peers, r, g, lower, rank, count);
    }
  }
}

// scan: seg[e] = sum over e' < e of round_up(cnt[e'], B); seg[E] = total.
// kAddAlso: each expert's count is cnt[e] + also[e], and cnt[e] is set to it
// (counts kept in two arrays while counting, one atomic per route). A
// template parameter, not a null test: with a store that may happen in the
// loop, the compiler issued a thread's count reads one after another instead
// of all together.
// Thread t owns experts [t*per, t*per + per). Caller syncs before and after.
template <bool kAddAlso = false>
__device__ void scan_segments(int* cnt, int* seg, const Params& p, const int* also = nullptr) {
  __shared__ int warp_total[kWarps];
  const int E = p.num_experts, B = p.block_size;
  const int per = p.experts_per_thread;
  const int e0 = min(E, static_cast<int>(threadIdx.x) * per);
  const int e1 = min(E, e0 + per);
  int local = 0;
  for (int e = e0; e < e1; ++e) {
    if constexpr (kAddAlso) cnt[e] += also[e];
    local += p.div_block.div(cnt[e] + B - 1) * B;
  }
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

// Sets out[lo, hi) to `value`: this thread's share (gthread of gstride), with
// 16-byte stores between a scalar head and tail.
//
// Loops whose stride is a run-time share of the grid (here and in the tiny
// kernel's segment fills) are kept rolled (`unroll 1`): they run a few times
// per thread at most, and an unrolled one costs a trip count computed by an
// integer division (a reciprocal and about 20 dependent instructions) on every
// thread's path, plus code that never runs.
__device__ __forceinline__ void fill_range(int* out, int lo, int hi, int value, int gthread,
                                           int gstride) {
  if (lo >= hi) return;
  const int head = min(hi, lo + static_cast<int>(
                               (16 - reinterpret_cast<uintptr_t>(out + lo) % 16) % 16 / 4));
  if (lo + gthread < head) out[lo + gthread] = value;
  const int nvec = (hi - head) / 4;
  int4* vout = reinterpret_cast<int4*>(out + head);
  const int4 v4 = make_int4(value, value, value, value);
#pragma unroll 1
  for (int k = gthread; k < nvec; k += gstride) vout[k] = v4;
#pragma unroll 1
  for (int k = head + nvec * 4 + gthread; k < hi; k += gstride) out[k] = value;
}

// The expert_ids value of the blocks past the used ones (the contract's tail,
// mapped like every other entry when the map applies to the output).
__device__ __forceinline__ int tail_expert(const Params& p) {
  const int tail = p.expert_ids_tail;
  if (!p.map_out) return tail;
  return __ldg(p.map + (tail >= 0 ? tail : tail + p.num_experts));
}

// The expert ids fill_segments writes that depend on no count: the tail's and
// that of the first expert this thread's lane group fills. With a map applied
// to the output each is a global load; a kernel that reads them at its start
// has them in flight while it counts, instead of one round trip after its
// scan.
struct FillIds {
  int tail;
  int first_owner;
};

__device__ __forceinline__ FillIds fill_ids(const Params& p) {
  const int e0 = (blockIdx.x * blockDim.x + threadIdx.x) >> p.spread_group_log2;
  const int first = p.map_out && e0 < p.num_experts ? __ldg(p.map + e0) : e0;
  return {tail_expert(p), first};
}

// fill, once the segments are known (cnt[e] routes of expert e, segment
// starts seg[0..E], seg[E] the total): the padding slots and expert ids
// inside each segment, one expert per group of G lanes of the grid at a time
// (G = p.spread_group, a power of two <= 32 covering a block's padding), then
// every thread's share of the slots and blocks past the last segment, and
// num_tokens_post_pad. The spread kernel and the fused globalize kernel;
// `ids` from fill_ids.
__device__ __forceinline__ void fill_segments(const int* cnt, const int* seg, const Params& p,
                                              const FillIds& ids) {
  const int E = p.num_experts, n = p.numel;
  const int gthread = blockIdx.x * blockDim.x + threadIdx.x, gstride = gridDim.x * blockDim.x;
  const int G = p.spread_group, j = gthread & (G - 1);
  const int groups = gstride >> p.spread_group_log2;
  const int e0 = gthread >> p.spread_group_log2;
  for (int e = e0; e < E; e += groups) {
    const int s = seg[e], t = min(seg[e + 1], p.sorted_size);  // (min: a guard)
    for (int x = s + cnt[e] + j; x < t; x += G) p.sorted_ids[x] = n;
    const int b_end = min(p.div_block.div(t), p.expert_ids_size);
    int b = p.div_block.div(s) + j;
    if (b < b_end) {
      const int owner = e == e0 ? ids.first_owner : p.map_out ? __ldg(p.map + e) : e;
      for (; b < b_end; b += G) p.expert_ids[b] = owner;
    }
  }
  const int total = seg[E];
  fill_range(p.sorted_ids, total, p.sorted_size, n, gthread, gstride);
  fill_range(p.expert_ids, p.div_block.div(total), p.expert_ids_size, ids.tail, gthread, gstride);
  if (gthread == 0) *p.post_pad = total;
}

__device__ __forceinline__ void zero_ints(int* a, int count) {
  int4* a4 = reinterpret_cast<int4*>(a);
  for (int k = threadIdx.x; k < count / 4; k += blockDim.x) a4[k] = make_int4(0, 0, 0, 0);
  for (int k = count / 4 * 4 + threadIdx.x; k < count; k += blockDim.x) a[k] = 0;
}

// ---------------------------------------------------------------------------
// Host side: the kernels' parameters, and launching.
// ---------------------------------------------------------------------------
// The kernels' parameters of one call: its problem and buffers, the plan's
// sizes, and the splits of work derived from them.
Params to_params(const AlignProblem& c, const AlignBuffers& b, const LaunchPlan& plan) {
  Params p{};
  p.ids = b.ids;
  p.ids_int64 = b.ids_dtype == kInt64;
  p.map = b.map;
  p.sorted_ids = b.sorted_ids;
  p.expert_ids = b.expert_ids;
  p.post_pad = b.post_pad;
  p.scatter_idx = b.scatter_idx;
  p.scratch = b.scratch;
  p.numel = static_cast<int>(c.numel);
  p.num_experts = static_cast<int>(c.num_experts);
  p.block_size = static_cast<int>(c.block_size);
  p.sorted_size = static_cast<int>(c.sorted_size);
  p.expert_ids_size = static_cast<int>(c.expert_ids_size);
  p.expert_ids_tail = static_cast<int>(c.expert_ids_tail);
  p.map_in = c.map_while_counting;
  p.map_out = c.has_map && !c.map_while_counting;
  p.tile_hist = b.scratch;
  p.totals = b.scratch ? b.scratch + static_cast<size_t>(plan.num_tiles) * p.num_experts
                       : nullptr;
  p.hist_warps = plan.hist_warps;
  p.tile_routes = plan.tile_routes;
  p.num_tiles = plan.num_tiles;
  const int E = p.num_experts, W = plan.hist_warps;
  p.warp_routes = std::max(32, ((plan.tile_routes + W - 1) / W + 31) & ~31);
  const int nt = plan.threads;
  p.experts_per_thread = (E + nt - 1) / nt;
  p.row_groups = E >= nt ? 1 : std::min(W, nt / E);
  p.rows_per_group = (W + p.row_groups - 1) / p.row_groups;
  // 16-byte loads of 4 experts need rows of a multiple of 4 ints and an
  // aligned scratch (torch's allocator aligns to 512 bytes).
  const bool vec4 = E % 4 == 0 && reinterpret_cast<uintptr_t>(b.scratch) % 16 == 0;
  p.prefix_cols = vec4 ? E / 4 : E;
  // Groups beyond one per kPrefixInFlight tiles only add shared-memory
  // atomics, on few addresses when E is small.
  p.tile_groups = std::max(1, std::min(nt / p.prefix_cols,
                                       (plan.num_tiles + kPrefixInFlight - 1) / kPrefixInFlight));
  p.div_prefix_cols = FastDiv::make(static_cast<uint32_t>(p.prefix_cols));
  p.spread_group_log2 = spread_group_log2(p.block_size);
  p.spread_group = 1 << p.spread_group_log2;
  p.div_block = FastDiv::make(static_cast<uint32_t>(p.block_size));
  p.div_experts = FastDiv::make(static_cast<uint32_t>(E));
  return p;
}

// Programmatic dependent launch (Hopper and newer; dependent_launch in
// kernels.h decides per call whether the kernels launch so). A kernel
// launched as a programmatic dependent may start while the kernel before it
// in the stream is still finishing, so every kernel here calls
// await_stream_inputs() before its first global memory access, read or
// write: until then the previous kernel's writes (topk_ids, expert_map) may
// not be visible, and it may still read memory the caching allocator has
// handed to this call's outputs. Right after, it lets the next kernel in the
// stream launch early; that kernel's own wait still waits for all of this
// grid to finish and its writes to be visible. Both are no-ops in a kernel
// launched the ordinary way, and compile to nothing before sm_90.
__device__ __forceinline__ void await_stream_inputs() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Launches kKernel<<<grid, threads, smem_bytes, stream>>>(args...), as a
// programmatic dependent launch where dependent_launch(device) says so.
template <auto kKernel, typename... Args>
cudaError_t launch_kernel(int grid, int threads, size_t smem_bytes, int device,
                          cudaStream_t stream, const Args&... args) {
  if (!dependent_launch(device)) {
    kKernel<<<grid, threads, smem_bytes, stream>>>(args...);
    return cudaGetLastError();
  }
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(static_cast<unsigned>(grid));
  config.blockDim = dim3(static_cast<unsigned>(threads));
  config.dynamicSmemBytes = smem_bytes;
  config.stream = stream;
  config.attrs = attr;
  config.numAttrs = 1;
  return cudaLaunchKernelEx(&config, kKernel, args...);
}

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

// Launches kKernel (launch_kernel) with the plan's CTAs, threads and shared
// memory, first letting it use opt-in shared memory when the plan needs more
// than a kernel may use without opting in.
template <auto kKernel, typename... Args>
cudaError_t launch_with_smem(const LaunchPlan& plan, int device, int smem_optin_bytes,
                             cudaStream_t stream, const Args&... args) {
  if (plan.smem_bytes > kDefaultSmemBytes) {
    const cudaError_t err = allow_smem<kKernel>(device, smem_optin_bytes);
    if (err != cudaSuccess) return err;
  }
  return launch_kernel<kKernel>(plan.num_tiles, plan.threads, plan.smem_bytes, device, stream,
                                args...);
}

// Loads kKernels on the current device (querying a kernel's attributes loads
// it).
template <auto... kKernels>
cudaError_t query_all() {
  cudaFuncAttributes attr;
  cudaError_t err = cudaSuccess;
  // Left to right; stops at the first error.
  ((err == cudaSuccess ? (err = cudaFuncGetAttributes(&attr, kKernels)) : err), ...);
  return err;
}

}  // namespace
}  // namespace vllm_moe_align
