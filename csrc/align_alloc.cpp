// The allocating variant, moe_align_block_size: sizes and allocates the
// outputs, then calls the out-variant of whichever backend owns topk_ids. One
// call from Python does the allocation (with the caching allocator: no
// kernel, no fill) and the work; every element of every output is then
// written by the backend's out-variant.
#include "checks.h"

#include <torch/library.h>

#include <tuple>

namespace vllm_moe_align {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> align_alloc(
    const at::Tensor& topk_ids, int64_t num_experts, int64_t block_size,
    int64_t max_num_tokens_padded, const std::optional<at::Tensor>& expert_map,
    bool ignore_invalid_experts, int64_t expert_ids_tail, bool return_scatter_idx) {
  check_topk_ids(topk_ids);
  check_experts_and_block_size(num_experts, block_size);
  const int64_t numel = topk_ids.numel();
  check_max_num_tokens_padded(max_num_tokens_padded, numel, num_experts, block_size);
  const auto opts = topk_ids.options().dtype(at::kInt);
  at::Tensor sorted_ids = at::empty({max_num_tokens_padded}, opts);
  at::Tensor expert_ids =
      at::empty({(max_num_tokens_padded + block_size - 1) / block_size}, opts);
  at::Tensor post_pad = at::empty({1}, opts);
  at::Tensor scatter = at::empty({return_scatter_idx ? numel : 0, 1}, opts);

  static auto out_op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("vllm_moe_align::moe_align_block_size_out", "")
          .typed<void(const at::Tensor&, int64_t, int64_t, at::Tensor&, at::Tensor&,
                      at::Tensor&, const std::optional<at::Tensor>&,
                      const std::optional<at::Tensor>&, bool, int64_t)>();
  std::optional<at::Tensor> scatter_arg;
  if (return_scatter_idx) scatter_arg = scatter;
  out_op.call(topk_ids, num_experts, block_size, sorted_ids, expert_ids, post_pad,
              expert_map, scatter_arg, ignore_invalid_experts, expert_ids_tail);
  return {sorted_ids, expert_ids, post_pad, scatter};
}

}  // namespace

TORCH_LIBRARY_IMPL(vllm_moe_align, CompositeExplicitAutograd, m) {
  m.impl("moe_align_block_size", &align_alloc);
}

}  // namespace vllm_moe_align
