// CPU kernel of fused_globalize_align_block_size_out: the valid routes'
// local ids go through the align kernel's stable counting sort (count, scan,
// fill, scatter), and the scatter pass also rewrites each id to its global
// id, or -1. Sequential and deterministic: routes ascend inside each
// expert's segment.
#include "globalize_cpu.h"

#include <cstdint>
#include <vector>

namespace vllm_moe_align {

void globalize_cpu(const GlobalizeProblem& p, const GlobalizeBuffers& b) {
  const int64_t L = p.local_num_experts;
  const int64_t B = p.block_size;
  const int64_t n = p.numel;
  const int32_t pad_value = static_cast<int32_t>(n);
  int64_t* ids = b.ids;
  int32_t* sorted_ids = b.sorted_ids;
  int32_t* expert_ids = b.expert_ids;

  // Rows [num_recv, N) hold whatever the receive buffer held.
  const int64_t num_recv = b.psum[p.psum_size - 1];

  // Bin of a route: its local id (read as a 32-bit int), or L when the route
  // is dropped (id outside [0, L), global id past the last expert, or a row
  // that is not real).
  auto bin_of = [&](int64_t i) -> int64_t {
    const int64_t local = static_cast<int32_t>(ids[i]);
    const bool valid = local >= 0 && local < L &&
                       local + p.rank_expert_offset < p.global_num_experts &&
                       i / p.topk < num_recv;
    return valid ? local : L;
  };

  // count
  std::vector<int64_t> count(L + 1, 0);
  for (int64_t i = 0; i < n; ++i) ++count[bin_of(i)];

  // scan: segment starts, each segment padded to a multiple of B
  std::vector<int64_t> start(L + 1, 0);
  for (int64_t e = 0; e < L; ++e) start[e + 1] = start[e] + (count[e] + B - 1) / B * B;
  const int64_t total = start[L];
  *b.post_pad = static_cast<int32_t>(total);

  // fill: padding after each segment's routes and after the last segment;
  // the owner of each used block, then -1.
  for (int64_t e = 0; e < L; ++e)
    for (int64_t s = start[e] + count[e]; s < start[e + 1]; ++s) sorted_ids[s] = pad_value;
  for (int64_t s = total; s < p.sorted_size; ++s) sorted_ids[s] = pad_value;
  for (int64_t e = 0; e < L; ++e)
    for (int64_t blk = start[e] / B; blk < start[e + 1] / B; ++blk)
      expert_ids[blk] = static_cast<int32_t>(e);
  for (int64_t blk = total / B; blk < p.expert_ids_size; ++blk) expert_ids[blk] = -1;

  // scatter, in route order so each segment is ascending; each id is read
  // (by bin_of) before it is rewritten
  std::vector<int64_t> cursor(start.begin(), start.end() - 1);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t bin = bin_of(i);
    const bool valid = bin < L;
    if (valid) sorted_ids[cursor[bin]++] = static_cast<int32_t>(i);
    if (b.scatter_idx) b.scatter_idx[i] = valid ? static_cast<int32_t>(i) : -1;
    ids[i] = valid ? bin + p.rank_expert_offset : -1;
  }
}

}  // namespace vllm_moe_align
