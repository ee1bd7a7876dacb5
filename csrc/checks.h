// Argument checks of every op, shared by both backends and both frontends:
// the limits, and the checks, which throw errors naming the offending
// argument (errors.h) and build the validated description of one call
// (AlignProblem or GlobalizeProblem, problem.h). Each op checks each argument
// once: the out-variant its arguments and the caller's buffers
// (check_align_out_args), the allocating variant its arguments before it
// allocates the outputs (check_align_alloc_args); both then run the same
// unchecked body (ops.h). fused_globalize_align_block_size_out checks its
// arguments and buffers once too (check_globalize_out_args, at the end).
//
// The checks are templates over the frontend's tensor type T (at::Tensor or
// torch::stable::Tensor); each frontend specialises TensorTraits<T> with
// these static functions:
//   int dtype(t)                    torch's ScalarType code (Dtype, problem.h)
//   std::string dtype_name(t)       "Float", "Long", ... (messages only)
//   bool same_device(a, b)
//   std::string device_name(t)      "cuda:0", ... (messages only)
//   int64_t numel(t), dim(t), size(t, d), stride(t, d)
//   bool is_contiguous(t)
//   void* data(t)
#pragma once

#include "errors.h"
#include "problem.h"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>

namespace vllm_moe_align {

// Limits enforced on every call. Within them every index the kernels compute
// (route index, position in sorted_token_ids, block index) fits in int32:
// numel + num_experts * (block_size - 1) < 2^30 + 2^12 * 2^10 < 2^31.
constexpr int64_t kMaxRoutes = int64_t{1} << 30;
constexpr int64_t kMaxExperts = 4096;
constexpr int64_t kMaxBlockSize = 1024;

template <typename T>
struct TensorTraits;  // specialised by the frontend

// Largest num_tokens_post_pad any input of this shape can produce: buffers of
// at least this size are enough for the op never to write out of bounds.
// Each expert pads its share to a multiple of block_size (at most
// block_size - 1 extra slots), and an expert with c >= 1 routes pads to at
// most c * block_size slots.
inline int64_t max_padded_routes(int64_t numel, int64_t num_experts, int64_t block_size) {
  return std::min(numel + num_experts * (block_size - 1), numel * block_size);
}

// The limits on num_experts and block_size, shared by every op that takes
// them.
inline void check_experts_and_block_size(int64_t num_experts, int64_t block_size) {
  VLLM_MOE_ALIGN_CHECK_VALUE(num_experts >= 1 && num_experts <= kMaxExperts,
                             "num_experts must be in [1, ", kMaxExperts, "], got ", num_experts);
  VLLM_MOE_ALIGN_CHECK_VALUE(block_size >= 1 && block_size <= kMaxBlockSize,
                             "block_size must be in [1, ", kMaxBlockSize, "], got ", block_size);
}

// The GPU a launch-plan op plans for (cuda_launch_plan, cuda_globalize_plan).
inline void check_gpu_limits(int64_t num_sms, int64_t smem_optin_bytes) {
  VLLM_MOE_ALIGN_CHECK_VALUE(num_sms >= 1 && num_sms <= 4096,
                             "num_sms must be in [1, 4096], got ", num_sms);
  VLLM_MOE_ALIGN_CHECK_VALUE(smem_optin_bytes >= 0 && smem_optin_bytes <= INT32_MAX,
                             "smem_optin_bytes must be in [0, 2^31), got ", smem_optin_bytes);
}

// The sizes cuda_launch_plan is asked about: the align ops' limits, and a GPU
// of 1 to 4096 SMs with an int32 number of opt-in shared-memory bytes.
inline void check_launch_plan_args(int64_t numel, int64_t num_experts, int64_t block_size,
                                   int64_t sorted_size, int64_t num_sms,
                                   int64_t smem_optin_bytes) {
  VLLM_MOE_ALIGN_CHECK_VALUE(numel >= 0 && numel <= kMaxRoutes, "numel must be in [0, ",
                             kMaxRoutes, "], got ", numel);
  check_experts_and_block_size(num_experts, block_size);
  VLLM_MOE_ALIGN_CHECK_VALUE(sorted_size >= 0 && sorted_size <= INT32_MAX,
                             "sorted_size must be in [0, 2^31), got ", sorted_size);
  check_gpu_limits(num_sms, smem_optin_bytes);
}

// The arguments both align ops check first, in this order: topk_ids' dtype
// (the signed integer types and uint8, which every backend reads) and count
// (so every index fits in int32), then num_experts and block_size: the
// problem's shape. Returns the problem with these filled in; the caller
// fills in the rest.
template <typename T>
AlignProblem check_ids_and_shape(const T& topk_ids, int64_t num_experts, int64_t block_size) {
  using TT = TensorTraits<T>;
  const int t = TT::dtype(topk_ids);
  VLLM_MOE_ALIGN_CHECK_TYPE(t == kInt64 || t == kInt32 || t == kInt16 || t == kInt8 || t == kUInt8,
                            "topk_ids must be an integer tensor (int64, int32, int16, int8 or "
                            "uint8), got ", TT::dtype_name(topk_ids));
  const int64_t numel = TT::numel(topk_ids);
  VLLM_MOE_ALIGN_CHECK_VALUE(numel <= kMaxRoutes, "topk_ids has ", numel, " elements; at most ",
                             kMaxRoutes, " are supported");
  check_experts_and_block_size(num_experts, block_size);
  AlignProblem p{};
  p.ids_dtype = t;
  p.numel = numel;
  p.num_experts = num_experts;
  p.block_size = block_size;
  return p;
}

// Every tensor argument is on the device of the op's ids (`ids_name`:
// topk_ids for the align ops; the fake kernels in _ops/fake.py say the same,
// in the same words).
template <typename T>
void check_same_device(const T& t, const char* name, const T& ids,
                       const char* ids_name = "topk_ids") {
  using TT = TensorTraits<T>;
  VLLM_MOE_ALIGN_CHECK_VALUE(TT::same_device(t, ids), name, " must be on the same device as ",
                             ids_name, " (", TT::device_name(ids), "), got ",
                             TT::device_name(t));
}

template <typename T>
void check_int32_buffer(const T& t, const char* name, const T& ids,
                        const char* ids_name = "topk_ids") {
  using TT = TensorTraits<T>;
  VLLM_MOE_ALIGN_CHECK_TYPE(TT::dtype(t) == kInt32, name, " must be an int32 tensor, got ",
                            TT::dtype_name(t));
  check_same_device(t, name, ids, ids_name);
  VLLM_MOE_ALIGN_CHECK_VALUE(TT::is_contiguous(t), name, " must be contiguous");
}

template <typename T>
std::string shape_of(const T& t) {
  using TT = TensorTraits<T>;
  std::string out = "[";
  for (int64_t d = 0; d < TT::dim(t); ++d) out += (d ? ", " : "") + str(TT::size(t, d));
  return out + "]";
}

// Bytes per element of the dtypes the ops accept (Dtype).
inline int64_t element_bytes(int dtype) {
  return dtype == kInt64 ? 8 : dtype == kInt32 ? 4 : dtype == kInt16 ? 2 : 1;
}

// The bytes [begin, end) that hold a tensor's elements: from the lowest to
// the highest element address, given its data pointer, sizes and strides.
// For a non-contiguous tensor this includes the gaps between its elements,
// so a buffer placed in those gaps counts as overlapping (a layout no caller
// needs, and refusing it keeps the test to one comparison per pair). A
// tensor without elements occupies no bytes.
struct ByteSpan {
  uintptr_t begin = 0;
  uintptr_t end = 0;
};

template <typename T>
ByteSpan byte_span(const T& t, int64_t element_size) {
  using TT = TensorTraits<T>;
  if (TT::numel(t) == 0) return {};
  int64_t low = 0, high = 0;  // element offsets of the lowest and highest element
  for (int64_t d = 0; d < TT::dim(t); ++d) {
    const int64_t reach = (TT::size(t, d) - 1) * TT::stride(t, d);
    (reach < 0 ? low : high) += reach;
  }
  const auto base = reinterpret_cast<uintptr_t>(TT::data(t));
  return {base + static_cast<uintptr_t>(low * element_size),
          base + static_cast<uintptr_t>((high + 1) * element_size)};
}

inline bool overlap(const ByteSpan& a, const ByteSpan& b) {
  return a.begin != a.end && b.begin != b.end && a.begin < b.end && b.begin < a.end;
}

// No output shares a byte with another output or with an input. The kernels
// read the inputs while they write the outputs, and write each output as if
// nothing else wrote there, so any sharing gives a wrong result and no error
// (sorted_token_ids over topk_ids can overwrite ids not yet read; a
// num_tokens_post_pad inside expert_ids can end up holding an expert id).
// The inputs may share memory with each other: both are only read.
// Only data pointers, sizes and strides are compared (no storage lookup), so
// the check costs a few comparisons per call; tensors on different devices
// were refused before this runs. Expects the other checks to have passed:
// the outputs and expert_map are int32.
struct NamedSpan {
  const char* name;
  ByteSpan span;
};

// The pair check behind check_no_overlap and check_globalize_no_overlap:
// `all` lists the `outputs` outputs first, then the inputs, `count` in all; a
// pair is checked when its first member is an output, and messages name the
// output first.
inline void check_outputs_apart(const NamedSpan* all, int outputs, int count) {
  for (int i = 0; i < outputs; ++i) {
    for (int j = i + 1; j < count; ++j) {
      VLLM_MOE_ALIGN_CHECK_VALUE(!overlap(all[i].span, all[j].span), all[i].name, " and ",
                                 all[j].name,
                                 " overlap in memory; every output needs memory of its own, "
                                 "apart from the other outputs and the inputs");
    }
  }
}

template <typename T>
void check_no_overlap(const T& topk_ids, int ids_dtype, const T& sorted_token_ids,
                      const T& expert_ids, const T& num_tokens_post_pad,
                      const std::optional<T>& expert_map, const std::optional<T>& scatter_idx) {
  NamedSpan all[6];
  int outputs = 0;
  all[outputs++] = {"sorted_token_ids", byte_span(sorted_token_ids, 4)};
  all[outputs++] = {"expert_ids", byte_span(expert_ids, 4)};
  all[outputs++] = {"num_tokens_post_pad", byte_span(num_tokens_post_pad, 4)};
  if (scatter_idx.has_value()) all[outputs++] = {"scatter_idx", byte_span(*scatter_idx, 4)};
  int count = outputs;
  all[count++] = {"topk_ids", byte_span(topk_ids, element_bytes(ids_dtype))};
  if (expert_map.has_value()) all[count++] = {"expert_map", byte_span(*expert_map, 4)};
  check_outputs_apart(all, outputs, count);
}

// The arguments both align ops check after the outputs' sizes: expert_map
// (an int32 vector of num_experts entries on topk_ids' device) and
// expert_ids_tail (an int32; with a map applied to the output, an index into
// it). Fills in the problem's map flags and tail.
template <typename T>
void check_map_and_tail(AlignProblem& p, const T& topk_ids, const std::optional<T>& expert_map,
                        bool ignore_invalid_experts, int64_t expert_ids_tail) {
  using TT = TensorTraits<T>;
  const int64_t num_experts = p.num_experts;
  const bool has_map = expert_map.has_value();
  if (has_map) {
    const T& m = *expert_map;
    VLLM_MOE_ALIGN_CHECK_TYPE(TT::dtype(m) == kInt32, "expert_map must be an int32 tensor, got ",
                              TT::dtype_name(m));
    check_same_device(m, "expert_map", topk_ids);
    VLLM_MOE_ALIGN_CHECK_VALUE(TT::dim(m) == 1 && TT::numel(m) == num_experts,
                               "expert_map must be a 1-D tensor of num_experts=", num_experts,
                               " elements (global id -> local id), got shape ", shape_of(m));
    VLLM_MOE_ALIGN_CHECK_VALUE(TT::is_contiguous(m), "expert_map must be contiguous");
    if (!ignore_invalid_experts) {
      // expert_ids is indexed into expert_map afterwards, Python style.
      VLLM_MOE_ALIGN_CHECK_VALUE(expert_ids_tail >= -num_experts && expert_ids_tail < num_experts,
                                 "expert_ids_tail=", expert_ids_tail,
                                 " is not a valid index into expert_map");
    }
  }
  VLLM_MOE_ALIGN_CHECK_VALUE(expert_ids_tail >= INT32_MIN && expert_ids_tail <= INT32_MAX,
                             "expert_ids_tail must fit in int32, got ", expert_ids_tail);
  p.has_map = has_map;
  p.map_while_counting = has_map && ignore_invalid_experts;
  p.expert_ids_tail = expert_ids_tail;
}

// The out-variant's arguments: dtypes, devices, sizes and limits, and no
// output overlapping another argument. Returns the problem.
template <typename T>
AlignProblem check_align_out_args(const T& topk_ids, int64_t num_experts, int64_t block_size,
                                  const T& sorted_token_ids, const T& expert_ids,
                                  const T& num_tokens_post_pad,
                                  const std::optional<T>& expert_map,
                                  const std::optional<T>& scatter_idx,
                                  bool ignore_invalid_experts, int64_t expert_ids_tail) {
  using TT = TensorTraits<T>;
  AlignProblem p = check_ids_and_shape(topk_ids, num_experts, block_size);
  const int64_t numel = p.numel;

  check_int32_buffer(sorted_token_ids, "sorted_token_ids", topk_ids);
  check_int32_buffer(expert_ids, "expert_ids", topk_ids);
  check_int32_buffer(num_tokens_post_pad, "num_tokens_post_pad", topk_ids);

  const int64_t need = max_padded_routes(numel, num_experts, block_size);
  const int64_t sorted_size = TT::numel(sorted_token_ids);
  VLLM_MOE_ALIGN_CHECK_VALUE(sorted_size >= need, "sorted_token_ids has ", sorted_size,
                             " elements; at least ", need, " are needed for ", numel,
                             " routes, num_experts=", num_experts, ", block_size=", block_size);
  const int64_t need_blocks = (need + block_size - 1) / block_size;
  const int64_t expert_ids_size = TT::numel(expert_ids);
  VLLM_MOE_ALIGN_CHECK_VALUE(expert_ids_size >= need_blocks, "expert_ids has ", expert_ids_size,
                             " elements; at least ", need_blocks, " are needed");
  VLLM_MOE_ALIGN_CHECK_VALUE(TT::numel(num_tokens_post_pad) == 1,
                             "num_tokens_post_pad must have exactly one element, got ",
                             TT::numel(num_tokens_post_pad));
  p.sorted_size = sorted_size;
  p.expert_ids_size = expert_ids_size;

  check_map_and_tail(p, topk_ids, expert_map, ignore_invalid_experts, expert_ids_tail);

  if (scatter_idx.has_value()) {
    check_int32_buffer(*scatter_idx, "scatter_idx", topk_ids);
    VLLM_MOE_ALIGN_CHECK_VALUE(TT::numel(*scatter_idx) == numel, "scatter_idx must have ", numel,
                               " elements (one per route), got ", TT::numel(*scatter_idx));
  }
  p.has_scatter_idx = scatter_idx.has_value();

  check_no_overlap(topk_ids, p.ids_dtype, sorted_token_ids, expert_ids, num_tokens_post_pad,
                   expert_map, scatter_idx);
  return p;
}

// The allocating variant's arguments, before anything is allocated; the
// outputs' sizes follow from them: sorted_token_ids of max_num_tokens_padded
// (at least max_padded_routes, and an int32 index), expert_ids of one entry
// per block of it, scatter_idx of one per route when asked for. The outputs
// it then allocates are int32, contiguous, on topk_ids' device and apart from
// every other tensor: what the out-variant checks of its buffers holds by
// construction, so it is not checked again. Returns the problem.
template <typename T>
AlignProblem check_align_alloc_args(const T& topk_ids, int64_t num_experts, int64_t block_size,
                                    int64_t max_num_tokens_padded,
                                    const std::optional<T>& expert_map,
                                    bool ignore_invalid_experts, int64_t expert_ids_tail,
                                    bool return_scatter_idx) {
  AlignProblem p = check_ids_and_shape(topk_ids, num_experts, block_size);
  const int64_t need = max_padded_routes(p.numel, num_experts, block_size);
  VLLM_MOE_ALIGN_CHECK_VALUE(max_num_tokens_padded >= need && max_num_tokens_padded <= INT32_MAX,
                             "max_num_tokens_padded must be in [", need, ", 2^31) for ", p.numel,
                             " routes, num_experts=", num_experts, ", block_size=", block_size,
                             "; got ", max_num_tokens_padded);
  p.sorted_size = max_num_tokens_padded;
  p.expert_ids_size = (max_num_tokens_padded + block_size - 1) / block_size;
  check_map_and_tail(p, topk_ids, expert_map, ignore_invalid_experts, expert_ids_tail);
  p.has_scatter_idx = return_scatter_idx;
  return p;
}

// ---------------------------------------------------------------------------
// fused_globalize_align_block_size_out (vLLM 0.33's fused globalize + align;
// the contract: vllm_moe_align_plugin/globalize_reference.py).

// vLLM's limit on local_num_experts.
constexpr int64_t kMaxLocalExperts = 1024;

// The length of sorted_ids the contract gives: numel + L * (B - 1), capped at
// numel * B when numel < L (each route then fills at most one block). Within
// the checked limits (numel <= 2^30, L <= 1024, B < 2^31) nothing overflows.
inline int64_t globalize_sorted_size(int64_t numel, int64_t local_num_experts,
                                     int64_t block_size) {
  const int64_t size = numel + local_num_experts * (block_size - 1);
  return numel < local_num_experts ? std::min(size, numel * block_size) : size;
}

// local_num_experts and block_size of fused_globalize_align_block_size_out,
// and the length of sorted_ids they give numel routes (returned: it must fit
// an int32).
inline int64_t check_globalize_shape(int64_t numel, int64_t local_num_experts,
                                     int64_t block_size) {
  VLLM_MOE_ALIGN_CHECK_VALUE(local_num_experts >= 0 && local_num_experts <= kMaxLocalExperts,
                             "local_num_experts must be in [0, ", kMaxLocalExperts, "], got ",
                             local_num_experts);
  VLLM_MOE_ALIGN_CHECK_VALUE(block_size >= 1 && block_size <= INT32_MAX,
                             "block_size must be in [1, 2^31), got ", block_size);
  const int64_t need = globalize_sorted_size(numel, local_num_experts, block_size);
  VLLM_MOE_ALIGN_CHECK_VALUE(need <= INT32_MAX, "block_size=", block_size, " with ", numel,
                             " routes and local_num_experts=", local_num_experts,
                             " needs sorted_ids of ", need, " elements; at most 2^31 - 1 are "
                             "supported");
  return need;
}

// cuda_globalize_plan's arguments; fills in the sizes of `g` (numel,
// local_num_experts and block_size set).
inline void check_globalize_plan_args(GlobalizeProblem& g, int64_t num_sms,
                                      int64_t smem_optin_bytes) {
  VLLM_MOE_ALIGN_CHECK_VALUE(g.numel >= 0 && g.numel <= kMaxRoutes, "numel must be in [0, ",
                             kMaxRoutes, "], got ", g.numel);
  g.sorted_size = check_globalize_shape(g.numel, g.local_num_experts, g.block_size);
  g.expert_ids_size = (g.sorted_size + g.block_size - 1) / g.block_size;
  check_gpu_limits(num_sms, smem_optin_bytes);
}

// No output shares a byte with another output or with the input: the ids
// are rewritten in place while the other outputs are written, and psum is
// read while they are.
template <typename T>
void check_globalize_no_overlap(const T& recv_topk_idx, const T& psum, const T& sorted_ids,
                                const T& expert_ids, const T& num_tokens_post_pad,
                                const std::optional<T>& scatter_idx) {
  NamedSpan all[6];
  int outputs = 0;
  all[outputs++] = {"recv_topk_idx", byte_span(recv_topk_idx, 8)};
  all[outputs++] = {"sorted_ids", byte_span(sorted_ids, 4)};
  all[outputs++] = {"expert_ids", byte_span(expert_ids, 4)};
  all[outputs++] = {"num_tokens_post_pad", byte_span(num_tokens_post_pad, 4)};
  if (scatter_idx.has_value()) all[outputs++] = {"scatter_idx", byte_span(*scatter_idx, 4)};
  int count = outputs;
  all[count++] = {"psum_recv_per_rank", byte_span(psum, 4)};
  check_outputs_apart(all, outputs, count);
}

// Every argument, in order: the ids (int64, 2-D, contiguous, at most
// kMaxRoutes), psum_recv_per_rank (int32, on the ids' device, 1-D, non-empty,
// contiguous), the integers, then the caller's buffers (int32, on the ids'
// device, contiguous, exactly the contract's sizes) and no output
// overlapping another argument. Nothing reads a tensor's data here: the
// number of real rows stays on the device. Returns the problem.
template <typename T>
GlobalizeProblem check_globalize_out_args(const T& recv_topk_idx, const T& psum,
                                          int64_t rank_expert_offset,
                                          int64_t global_num_experts,
                                          int64_t local_num_experts, int64_t block_size,
                                          const T& sorted_ids, const T& expert_ids,
                                          const T& num_tokens_post_pad,
                                          const std::optional<T>& scatter_idx) {
  using TT = TensorTraits<T>;
  const T& ids = recv_topk_idx;
  constexpr const char* kIds = "recv_topk_idx";
  VLLM_MOE_ALIGN_CHECK_TYPE(TT::dtype(ids) == kInt64,
                            "recv_topk_idx must be an int64 tensor, got ", TT::dtype_name(ids));
  VLLM_MOE_ALIGN_CHECK_VALUE(TT::dim(ids) == 2,
                             "recv_topk_idx must be 2-D [tokens, topk], got shape ", shape_of(ids));
  VLLM_MOE_ALIGN_CHECK_VALUE(TT::is_contiguous(ids), "recv_topk_idx must be contiguous");
  const int64_t numel = TT::numel(ids);
  VLLM_MOE_ALIGN_CHECK_VALUE(numel <= kMaxRoutes, "recv_topk_idx has ", numel,
                             " elements; at most ", kMaxRoutes, " are supported");

  VLLM_MOE_ALIGN_CHECK_TYPE(TT::dtype(psum) == kInt32,
                            "psum_recv_per_rank must be an int32 tensor, got ",
                            TT::dtype_name(psum));
  check_same_device(psum, "psum_recv_per_rank", ids, kIds);
  VLLM_MOE_ALIGN_CHECK_VALUE(TT::dim(psum) == 1 && TT::numel(psum) >= 1,
                             "psum_recv_per_rank must be a non-empty 1-D tensor, got shape ",
                             shape_of(psum));
  VLLM_MOE_ALIGN_CHECK_VALUE(TT::is_contiguous(psum), "psum_recv_per_rank must be contiguous");

  VLLM_MOE_ALIGN_CHECK_VALUE(rank_expert_offset >= 0 && rank_expert_offset <= INT32_MAX,
                             "rank_expert_offset must be in [0, 2^31), got ", rank_expert_offset);
  VLLM_MOE_ALIGN_CHECK_VALUE(global_num_experts >= 0 && global_num_experts <= INT32_MAX,
                             "global_num_experts must be in [0, 2^31), got ", global_num_experts);
  const int64_t need = check_globalize_shape(numel, local_num_experts, block_size);
  const int64_t need_blocks = (need + block_size - 1) / block_size;

  check_int32_buffer(sorted_ids, "sorted_ids", ids, kIds);
  check_int32_buffer(expert_ids, "expert_ids", ids, kIds);
  check_int32_buffer(num_tokens_post_pad, "num_tokens_post_pad", ids, kIds);
  VLLM_MOE_ALIGN_CHECK_VALUE(TT::numel(sorted_ids) == need, "sorted_ids must have ", need,
                             " elements for ", numel, " routes, local_num_experts=",
                             local_num_experts, ", block_size=", block_size, "; got ",
                             TT::numel(sorted_ids));
  VLLM_MOE_ALIGN_CHECK_VALUE(TT::numel(expert_ids) == need_blocks, "expert_ids must have ",
                             need_blocks, " elements (one per block of sorted_ids), got ",
                             TT::numel(expert_ids));
  VLLM_MOE_ALIGN_CHECK_VALUE(TT::numel(num_tokens_post_pad) == 1,
                             "num_tokens_post_pad must have exactly one element, got ",
                             TT::numel(num_tokens_post_pad));
  if (scatter_idx.has_value()) {
    check_int32_buffer(*scatter_idx, "scatter_idx", ids, kIds);
    VLLM_MOE_ALIGN_CHECK_VALUE(TT::numel(*scatter_idx) == numel, "scatter_idx must have ", numel,
                               " elements (one per route), got ", TT::numel(*scatter_idx));
  }
  check_globalize_no_overlap(ids, psum, sorted_ids, expert_ids, num_tokens_post_pad, scatter_idx);

  GlobalizeProblem p{};
  p.numel = numel;
  p.topk = TT::size(ids, 1);
  p.psum_size = TT::numel(psum);
  p.rank_expert_offset = rank_expert_offset;
  p.global_num_experts = global_num_experts;
  p.local_num_experts = local_num_experts;
  p.block_size = block_size;
  p.sorted_size = need;
  p.expert_ids_size = need_blocks;
  p.has_scatter_idx = scatter_idx.has_value();
  return p;
}

}  // namespace vllm_moe_align
