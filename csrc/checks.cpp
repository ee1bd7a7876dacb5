// Argument checks of every op (declared and described in checks.h).
#include "checks.h"

#include <algorithm>
#include <string>

namespace vllm_moe_align {
namespace {

// Messages are assembled from strings only: an extension compiled with newer
// libstdc++ headers than the process's libstdc++ crashed when iostreams
// formatted an integer (GCC 13 headers against an older runtime);
// std::to_string does not go through iostreams.
std::string str(int64_t v) { return std::to_string(v); }
std::string str(const at::Tensor& t, bool device) {
  if (device) return t.device().str();
  std::string out = "[";
  for (int64_t d = 0; d < t.dim(); ++d) out += (d ? ", " : "") + std::to_string(t.size(d));
  return out + "]";
}
const char* str(at::ScalarType t) { return c10::toString(t); }

// Every tensor argument is on topk_ids' device (the fake kernels in _ops.py
// say the same, in the same words).
void check_same_device(const at::Tensor& t, const char* name, const at::Tensor& topk_ids) {
  TORCH_CHECK_VALUE(t.device() == topk_ids.device(), name,
                    " must be on the same device as topk_ids (", str(topk_ids, true),
                    "), got ", str(t, true));
}

void check_int32_buffer(const at::Tensor& t, const char* name, const at::Tensor& topk_ids) {
  TORCH_CHECK_TYPE(t.scalar_type() == at::kInt, name, " must be an int32 tensor, got ",
                   str(t.scalar_type()));
  check_same_device(t, name, topk_ids);
  TORCH_CHECK_VALUE(t.is_contiguous(), name, " must be contiguous");
}

}  // namespace

int64_t max_padded_routes(int64_t numel, int64_t num_experts, int64_t block_size) {
  // Each expert pads its share to a multiple of block_size (at most
  // block_size - 1 extra slots), and an expert with c >= 1 routes pads to at
  // most c * block_size slots.
  return std::min(numel + num_experts * (block_size - 1), numel * block_size);
}

void check_topk_ids(const at::Tensor& topk_ids) {
  const at::ScalarType t = topk_ids.scalar_type();
  TORCH_CHECK_TYPE(t == at::kLong || t == at::kInt || t == at::kShort || t == at::kChar ||
                       t == at::kByte,
                   "topk_ids must be an integer tensor (int64, int32, int16, int8 or uint8), got ",
                   str(t));
  const int64_t numel = topk_ids.numel();
  TORCH_CHECK_VALUE(numel <= kMaxRoutes, "topk_ids has ", str(numel), " elements; at most ",
                    str(kMaxRoutes), " are supported");
}

void check_experts_and_block_size(int64_t num_experts, int64_t block_size) {
  TORCH_CHECK_VALUE(num_experts >= 1 && num_experts <= kMaxExperts,
                    "num_experts must be in [1, ", str(kMaxExperts), "], got ", str(num_experts));
  TORCH_CHECK_VALUE(block_size >= 1 && block_size <= kMaxBlockSize,
                    "block_size must be in [1, ", str(kMaxBlockSize), "], got ", str(block_size));
}

void check_max_num_tokens_padded(int64_t max_num_tokens_padded, int64_t numel,
                                 int64_t num_experts, int64_t block_size) {
  const int64_t need = max_padded_routes(numel, num_experts, block_size);
  TORCH_CHECK_VALUE(max_num_tokens_padded >= need && max_num_tokens_padded <= INT32_MAX,
                    "max_num_tokens_padded must be in [", str(need), ", 2^31) for ", str(numel),
                    " routes, num_experts=", str(num_experts), ", block_size=", str(block_size),
                    "; got ", str(max_num_tokens_padded));
}

AlignProblem check_align_args(const at::Tensor& topk_ids, int64_t num_experts,
                              int64_t block_size, const at::Tensor& sorted_token_ids,
                              const at::Tensor& expert_ids,
                              const at::Tensor& num_tokens_post_pad,
                              const std::optional<at::Tensor>& expert_map,
                              const std::optional<at::Tensor>& scatter_idx,
                              bool ignore_invalid_experts, int64_t expert_ids_tail) {
  check_topk_ids(topk_ids);
  check_experts_and_block_size(num_experts, block_size);
  const int64_t numel = topk_ids.numel();

  check_int32_buffer(sorted_token_ids, "sorted_token_ids", topk_ids);
  check_int32_buffer(expert_ids, "expert_ids", topk_ids);
  check_int32_buffer(num_tokens_post_pad, "num_tokens_post_pad", topk_ids);

  const int64_t need = max_padded_routes(numel, num_experts, block_size);
  TORCH_CHECK_VALUE(sorted_token_ids.numel() >= need, "sorted_token_ids has ",
                    str(sorted_token_ids.numel()), " elements; at least ", str(need),
                    " are needed for ", str(numel), " routes, num_experts=", str(num_experts),
                    ", block_size=", str(block_size));
  const int64_t need_blocks = (need + block_size - 1) / block_size;
  TORCH_CHECK_VALUE(expert_ids.numel() >= need_blocks, "expert_ids has ",
                    str(expert_ids.numel()), " elements; at least ", str(need_blocks),
                    " are needed");
  TORCH_CHECK_VALUE(num_tokens_post_pad.numel() == 1,
                    "num_tokens_post_pad must have exactly one element, got ",
                    str(num_tokens_post_pad.numel()));

  const bool has_map = expert_map.has_value();
  if (has_map) {
    const at::Tensor& m = *expert_map;
    TORCH_CHECK_TYPE(m.scalar_type() == at::kInt, "expert_map must be an int32 tensor, got ",
                     str(m.scalar_type()));
    check_same_device(m, "expert_map", topk_ids);
    TORCH_CHECK_VALUE(m.dim() == 1 && m.numel() == num_experts,
                      "expert_map must be a 1-D tensor of num_experts=", str(num_experts),
                      " elements (global id -> local id), got shape ", str(m, false));
    TORCH_CHECK_VALUE(m.is_contiguous(), "expert_map must be contiguous");
    if (!ignore_invalid_experts) {
      // expert_ids is indexed into expert_map afterwards, Python style.
      TORCH_CHECK_VALUE(expert_ids_tail >= -num_experts && expert_ids_tail < num_experts,
                        "expert_ids_tail=", str(expert_ids_tail),
                        " is not a valid index into expert_map");
    }
  }
  TORCH_CHECK_VALUE(expert_ids_tail >= INT32_MIN && expert_ids_tail <= INT32_MAX,
                    "expert_ids_tail must fit in int32, got ", str(expert_ids_tail));
  if (scatter_idx.has_value()) {
    check_int32_buffer(*scatter_idx, "scatter_idx", topk_ids);
    TORCH_CHECK_VALUE(scatter_idx->numel() == numel, "scatter_idx must have ", str(numel),
                      " elements (one per route), got ", str(scatter_idx->numel()));
  }

  AlignProblem p;
  p.numel = numel;
  p.num_experts = num_experts;
  p.block_size = block_size;
  p.sorted_size = sorted_token_ids.numel();
  p.expert_ids_size = expert_ids.numel();
  p.has_map = has_map;
  p.map_while_counting = has_map && ignore_invalid_experts;
  p.expert_ids_tail = expert_ids_tail;
  p.has_scatter_idx = scatter_idx.has_value();
  return p;
}

void check_launch_plan_args(int64_t numel, int64_t num_experts, int64_t block_size,
                            int64_t sorted_size, int64_t num_sms,
                            int64_t smem_optin_bytes) {
  TORCH_CHECK_VALUE(numel >= 0 && numel <= kMaxRoutes, "numel must be in [0, ", str(kMaxRoutes),
                    "], got ", str(numel));
  check_experts_and_block_size(num_experts, block_size);
  TORCH_CHECK_VALUE(sorted_size >= 0 && sorted_size <= INT32_MAX,
                    "sorted_size must be in [0, 2^31), got ", str(sorted_size));
  TORCH_CHECK_VALUE(num_sms >= 1 && num_sms <= 4096, "num_sms must be in [1, 4096], got ",
                    str(num_sms));
  TORCH_CHECK_VALUE(smem_optin_bytes >= 0 && smem_optin_bytes <= INT32_MAX,
                    "smem_optin_bytes must be in [0, 2^31), got ", str(smem_optin_bytes));
}

}  // namespace vllm_moe_align
