// plan_launch: the one place the CUDA backend's launch sizes are chosen
// (regime, CTAs, threads, tile size, histogram warps, shared memory, scratch),
// each with its reason. Host code only: the op cuda_launch_plan reports the
// plan without a GPU.
#include "plan.h"

#include <algorithm>
#include <cstdint>

namespace vllm_moe_align {
namespace {

// Tiny regime (n <= kTinyMaxRoutes): CTAs of kTinyThreads threads, as many as
// give each thread about kTinySlotsPerThread slots of the output to fill
// (decode: one CTA; a large E * block_size spreads its padding over SMs).
// Every warp recomputes the layout, so fewer warps are cheaper; 4 warps still
// issue the padding stores of a typical decode call (E=256, B=16: 3848
// slots) in eight 16-byte stores a thread.
constexpr int kTinyThreads = 128;
constexpr int kTinySlotsPerThread = 64;

// Spread: every CTA loads all routes at once, kSpreadRoutesPerThread a
// thread, and owns a tile of 32 or 64 of them, at most one CTA per SM (each
// CTA re-reads all the routes, so more CTAs than SMs would only queue). The
// smallest tile that keeps to one wave wins: each CTA then ranks fewer routes
// of its own. Above kSpreadMaxRoutes (or without a CTA per tile) the tiled
// kernels win.
constexpr int kSpreadMaxRoutes = kSpreadRoutesPerThread * kThreads;

// Tiled: as many tiles as SMs (one wave), but at least kMinTileRoutes routes
// a tile (each CTA has a fixed cost: its expert scan), at most
// kMaxTileRoutes (the tile's routes are staged in shared memory), and few
// enough that each CTA can read all tiles' counts itself (tiles * E <=
// kPrefixHereMaxCells, saving the scan launch) unless that would break the
// tile-size cap or a full wave has over 1.5x as many tiles: only then does
// the wave gain more than the scan kernel's launch costs.
constexpr int kMinTileRoutes = 1024;
// Without the scan kernel, tiles may be smaller: with no third launch to pay
// for, more CTAs with less work each finish sooner. The scan kernel's choice
// keeps the larger minimum; the smaller one sent mid-size inputs with many
// experts to many tiles and the scan kernel, which was slower.
constexpr int kMinTileRoutesHere = 512;
constexpr int kMaxTileRoutes = 16384;
constexpr int kPrefixHereMaxCells = 16384;
// Tiled CTAs: threads sized to the tile, this many routes each, in
// [256, 1024]; idle warps would still run every phase's bookkeeping.
constexpr int kTiledRoutesPerThread = 4;
// Routes per histogram warp of a tile. Fewer routes a warp shorten its
// dependent count/scatter chain; fewer warps shorten the per-expert prefix
// pass (one step per warp row). 128 balances the two from 512 routes a tile.
constexpr int kRoutesPerWarp = 128;

// Globalize pass: one route a thread, so decode-sized calls (up to a few
// thousand routes) finish in one pass of their CTAs; larger ones stop at
// kGlobalizeCtasPerSm CTAs an SM (enough 256-thread CTAs to keep the loads of
// a whole GPU in flight) and loop.
constexpr int kGlobalizeCtasPerSm = 4;

// Fused globalize (up to kFusedGlobalizeMaxRoutes routes: with 2 or 4
// routes a thread it was slower than the two launches): its one CTA also
// fills the padding (as the spread kernel: a lane group of up to 32 lanes
// per expert) and the tail (16-byte stores); it takes warps for about
// kFusedSlotsPerThread tail slots a thread and one lane group per expert,
// beyond the warps its routes need.
constexpr int kFusedSlotsPerThread = 16;
// Beyond this many output slots (a large block_size) one CTA's share of the
// padding grows past what the two-launch path spreads over many CTAs.
constexpr int kFusedMaxSlots = 64 * kThreads;

}  // namespace

GlobalizePlan plan_globalize(int numel, int num_experts, int block_size, int sorted_size,
                             int num_sms, int smem_optin_bytes) {
  const int64_t n = numel, E = num_experts;
  GlobalizePlan g{};
  g.ctas = 1;
  // The tiny kernel packs a padded segment into 11 bits (block_size <= 1024,
  // the align op's limit); this op allows larger blocks, so such calls of
  // up to kFusedGlobalizeMaxRoutes routes take the fused kernel whatever
  // their slots. Up to kTinyMaxRoutes routes its two warps' rows always fit
  // (L <= 1024), so no call with a larger block reaches the tiny kernel.
  if (n <= kFusedGlobalizeMaxRoutes && (sorted_size <= kFusedMaxSlots || block_size > 1024)) {
    const int64_t route_warps = std::max<int64_t>(1, (n + 31) / 32);
    const int64_t fill_lanes = std::max((E << spread_group_log2(block_size)),
                                        (int64_t{sorted_size} + kFusedSlotsPerThread - 1) /
                                            kFusedSlotsPerThread);
    int64_t warps = std::min<int64_t>(kThreads / 32, std::max(route_warps, (fill_lanes + 31) / 32));
    // Fewer warps (down to the routes' own) when their histogram rows would
    // not fit the shared memory a kernel has without opting in.
    const auto bytes = [&](int64_t w) {
      return sizeof(int) *
             static_cast<size_t>(fused_globalize_smem_ints(static_cast<int>(E), static_cast<int>(w)));
    };
    while (warps > route_warps && bytes(warps) > kDefaultSmemBytes) --warps;
    if (bytes(warps) <= kDefaultSmemBytes) {
      g.fused = true;
      g.threads = static_cast<int>(warps * 32);
      g.smem_bytes = bytes(warps);
      return g;
    }
  }
  g.fused = false;
  g.align = plan_launch(numel, num_experts, block_size, sorted_size, false, num_sms,
                        smem_optin_bytes);
  g.folded = globalize_folds_into(g.align.regime);
  if (g.folded) {
    g.threads = g.ctas = 0;
    return g;
  }
  g.threads = kGlobalizeThreads;
  const int64_t want = (n + kGlobalizeThreads - 1) / kGlobalizeThreads;
  g.ctas = static_cast<int>(std::max<int64_t>(
      1, std::min<int64_t>(want, int64_t{kGlobalizeCtasPerSm} * std::max(num_sms, 1))));
  return g;
}

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

}  // namespace vllm_moe_align
