// Argument checks of every op, shared by both backends: the limits, the
// validated description of one call (AlignProblem), and the checks that throw
// c10 errors naming the offending argument (torch turns c10::ValueError into
// ValueError and c10::TypeError into TypeError).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <optional>

namespace vllm_moe_align {

// Limits enforced on every call. Within them every index the kernels compute
// (route index, position in sorted_token_ids, block index) fits in int32:
// numel + num_experts * (block_size - 1) < 2^30 + 2^12 * 2^10 < 2^31.
constexpr int64_t kMaxRoutes = int64_t{1} << 30;
constexpr int64_t kMaxExperts = 4096;
constexpr int64_t kMaxBlockSize = 1024;

// Everything a backend needs for one call, after validation.
struct AlignProblem {
  int64_t numel;            // number of routes (topk_ids.numel())
  int64_t num_experts;      // E: bins of the histogram
  int64_t block_size;       // B
  int64_t sorted_size;      // sorted_token_ids.numel(): every slot is written
  int64_t expert_ids_size;  // expert_ids.numel(): every slot is written
  bool has_map;             // expert_map given
  bool map_while_counting;  // true: route ids go through expert_map and -1 drops
                            // them; false: expert_ids is mapped after the fact
  int64_t expert_ids_tail;  // value of expert_ids past the last used block
                            // (before the output mapping, if any)
  bool has_scatter_idx;
};

// Largest num_tokens_post_pad any input of this shape can produce: buffers of
// at least this size are enough for the op never to write out of bounds.
int64_t max_padded_routes(int64_t numel, int64_t num_experts, int64_t block_size);

// The ids' dtype (the signed integer types and uint8, which every backend
// reads) and count (so every index fits in int32), checked before anything
// is allocated.
void check_topk_ids(const at::Tensor& topk_ids);

// The limits on num_experts and block_size (ValueError naming the argument),
// shared by every entry point that takes them.
void check_experts_and_block_size(int64_t num_experts, int64_t block_size);

// The allocating variant's output size: at least max_padded_routes, and an
// int32 index.
void check_max_num_tokens_padded(int64_t max_num_tokens_padded, int64_t numel,
                                 int64_t num_experts, int64_t block_size);

// Validates the out-variant's arguments (dtypes, devices, sizes, limits) and
// returns the problem description.
AlignProblem check_align_args(const at::Tensor& topk_ids, int64_t num_experts,
                              int64_t block_size, const at::Tensor& sorted_token_ids,
                              const at::Tensor& expert_ids,
                              const at::Tensor& num_tokens_post_pad,
                              const std::optional<at::Tensor>& expert_map,
                              const std::optional<at::Tensor>& scatter_idx,
                              bool ignore_invalid_experts, int64_t expert_ids_tail);

// The sizes cuda_launch_plan is asked about: the op's limits, and a GPU of
// 1 to 4096 SMs with an int32 number of opt-in shared-memory bytes.
void check_launch_plan_args(int64_t numel, int64_t num_experts, int64_t block_size,
                            int64_t sorted_size, int64_t num_sms,
                            int64_t smem_optin_bytes);

}  // namespace vllm_moe_align
