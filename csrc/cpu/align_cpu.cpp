// CPU kernel: a stable counting sort of the routes by expert, in four phases
// (count, scan, fill, scatter). Sequential: the CPU path exists for
// correctness (tests, CPU-only vLLM builds), not speed.
#include "../checks.h"

#include <torch/library.h>

#include <vector>

namespace vllm_moe_align {
namespace {

template <typename IdT>
void align_cpu_impl(const AlignProblem& p, const IdT* ids, const int32_t* map,
                    int32_t* sorted_ids, int32_t* expert_ids, int32_t* post_pad,
                    int32_t* scatter_idx) {
  const int64_t E = p.num_experts;
  const int64_t B = p.block_size;
  const int64_t n = p.numel;
  const int32_t pad_value = static_cast<int32_t>(n);

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
  *post_pad = static_cast<int32_t>(total);

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
    for (int64_t b = start[e] / B; b < start[e + 1] / B; ++b)
      expert_ids[b] = value;
  }
  for (int64_t b = total / B; b < p.expert_ids_size; ++b)
    expert_ids[b] = static_cast<int32_t>(tail);

  // scatter, in route order so each segment is ascending
  std::vector<int64_t> cursor(start.begin(), start.end() - 1);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t b = bin_of(i);
    if (b < E) sorted_ids[cursor[b]++] = static_cast<int32_t>(i);
    if (scatter_idx) scatter_idx[i] = b < E ? static_cast<int32_t>(i) : -1;
  }
}

void align_out_cpu(const at::Tensor& topk_ids, int64_t num_experts,
                   int64_t block_size, at::Tensor& sorted_token_ids,
                   at::Tensor& expert_ids, at::Tensor& num_tokens_post_pad,
                   const std::optional<at::Tensor>& expert_map,
                   const std::optional<at::Tensor>& scatter_idx,
                   bool ignore_invalid_experts, int64_t expert_ids_tail) {
  const AlignProblem p = check_align_args(
      topk_ids, num_experts, block_size, sorted_token_ids, expert_ids,
      num_tokens_post_pad, expert_map, scatter_idx, ignore_invalid_experts,
      expert_ids_tail);
  const at::Tensor ids = topk_ids.contiguous();
  const int32_t* map = p.has_map ? expert_map->data_ptr<int32_t>() : nullptr;
  int32_t* scatter = p.has_scatter_idx ? scatter_idx->data_ptr<int32_t>() : nullptr;
  AT_DISPATCH_INTEGRAL_TYPES(ids.scalar_type(), "moe_align_block_size_cpu", [&] {
    align_cpu_impl<scalar_t>(p, ids.data_ptr<scalar_t>(), map,
                             sorted_token_ids.data_ptr<int32_t>(),
                             expert_ids.data_ptr<int32_t>(),
                             num_tokens_post_pad.data_ptr<int32_t>(), scatter);
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(vllm_moe_align, CPU, m) {
  m.impl("moe_align_block_size_out", &align_out_cpu);
}

}  // namespace vllm_moe_align
