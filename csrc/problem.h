// One call of the align ops as every backend sees it: the problem
// (AlignProblem: sizes and flags, built once per call by the checks in
// checks.h) and the memory it reads and writes (AlignBuffers: plain pointers,
// filled in by the op's body in ops.h). Plain C++, no torch types: the CPU
// kernel, the CUDA host code and the CUDA kernel files (which stay free of
// torch headers) include it.
#pragma once

#include <cstdint>

namespace vllm_moe_align {

// torch's ScalarType codes of the dtypes the ops read (the same numbers in
// every torch release and both ABIs).
enum Dtype : int { kUInt8 = 0, kInt8 = 1, kInt16 = 2, kInt32 = 3, kInt64 = 4 };

// One call, validated: built once per call by the checks, then only read.
struct AlignProblem {
  int ids_dtype;            // topk_ids' dtype (Dtype)
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

// Where one call's data lives (all on one device, contiguous). The ids are
// the routes as the backend reads them: topk_ids (or a contiguous copy),
// widened to int32 where the backend needs it (the CUDA kernels read int32
// and int64 only), so their dtype is given here.
struct AlignBuffers {
  const void* ids;
  int ids_dtype;         // Dtype of `ids`
  const int32_t* map;    // expert_map or nullptr
  int32_t* sorted_ids;
  int32_t* expert_ids;
  int32_t* post_pad;
  int32_t* scatter_idx;  // or nullptr
  int32_t* scratch;      // CUDA: LaunchPlan::scratch_ints ints, or nullptr if 0
};

}  // namespace vllm_moe_align
