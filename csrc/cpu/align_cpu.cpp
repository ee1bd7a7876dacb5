// CPU kernel: a stable counting sort of the routes by expert, in four phases
// (count, scan, fill, scatter). Sequential: the CPU path exists for
// correctness (tests, CPU-only vLLM builds), not speed.
#include "align_cpu.h"

#include "../errors.h"

#include <cstdint>
#include <vector>

namespace vllm_moe_align {
namespace {

template <typename IdT>
void align_cpu_impl(const AlignProblem& p, const IdT* ids, const AlignBuffers& b) {
  const int64_t E = p.num_experts;
  const int64_t B = p.block_size;
  const int64_t n = p.numel;
  const int32_t pad_value = static_cast<int32_t>(n);
  const int32_t* map = b.map;
  int32_t* sorted_ids = b.sorted_ids;
  int32_t* expert_ids = b.expert_ids;

  // Bin of a route: its expert (local id when mapping while counting), or E
  // when the route is dropped (id out of range, or mapped to -1).
  auto bin_of = [&](int64_t i) -> int64_t {
    const int64_t id = static_cast<int64_t>(ids[i]);
    if (id < 0 || id >= E) return E;
    if (!p.map_while_counting) return id;
    const int64_t local = map[id];
    return (local >= 0 && local < E) ? local : E;
  };

  // count
  std::vector<int64_t> count(E + 1, 0);
  for (int64_t i = 0; i < n; ++i) ++count[bin_of(i)];

  // scan: segment starts, each segment padded to a multiple of B
  std::vector<int64_t> start(E + 1, 0);
  for (int64_t e = 0; e < E; ++e)
    start[e + 1] = start[e] + (count[e] + B - 1) / B * B;
  const int64_t total = start[E];
  *b.post_pad = static_cast<int32_t>(total);

  // fill: padding after each segment's routes and after the last segment;
  // expert_ids for used blocks, then the tail value.
  for (int64_t e = 0; e < E; ++e)
    for (int64_t s = start[e] + count[e]; s < start[e + 1]; ++s)
      sorted_ids[s] = pad_value;
  for (int64_t s = total; s < p.sorted_size; ++s) sorted_ids[s] = pad_value;

  const bool map_out = p.has_map && !p.map_while_counting;
  int64_t tail = p.expert_ids_tail;
  if (map_out) tail = map[tail >= 0 ? tail : tail + E];
  for (int64_t e = 0; e < E; ++e) {
    const int32_t value = static_cast<int32_t>(map_out ? map[e] : e);
    for (int64_t blk = start[e] / B; blk < start[e + 1] / B; ++blk)
      expert_ids[blk] = value;
  }
  for (int64_t blk = total / B; blk < p.expert_ids_size; ++blk)
    expert_ids[blk] = static_cast<int32_t>(tail);

  // scatter, in route order so each segment is ascending
  std::vector<int64_t> cursor(start.begin(), start.end() - 1);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t bin = bin_of(i);
    if (bin < E) sorted_ids[cursor[bin]++] = static_cast<int32_t>(i);
    if (b.scatter_idx) b.scatter_idx[i] = bin < E ? static_cast<int32_t>(i) : -1;
  }
}

}  // namespace

void align_cpu(const AlignProblem& p, const AlignBuffers& b) {
  switch (b.ids_dtype) {
    case kInt64:
      return align_cpu_impl(p, static_cast<const int64_t*>(b.ids), b);
    case kInt32:
      return align_cpu_impl(p, static_cast<const int32_t*>(b.ids), b);
    case kInt16:
      return align_cpu_impl(p, static_cast<const int16_t*>(b.ids), b);
    case kInt8:
      return align_cpu_impl(p, static_cast<const int8_t*>(b.ids), b);
    case kUInt8:
      return align_cpu_impl(p, static_cast<const uint8_t*>(b.ids), b);
    default:
      runtime_error("align_cpu: unexpected ids dtype code " + str(b.ids_dtype));
  }
}

}  // namespace vllm_moe_align
