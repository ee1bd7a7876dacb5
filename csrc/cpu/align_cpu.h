// CPU kernel of the out-variant, on validated arguments and plain pointers
// (no torch types: both frontends call it).
#pragma once

#include "../checks.h"

#include <cstdint>

namespace vllm_moe_align {

struct CpuBuffers {
  const void* ids;  // contiguous routes of dtype ids_dtype (checks.h: Dtype)
  int ids_dtype;
  const int32_t* map;  // expert_map or nullptr
  int32_t* sorted_ids;
  int32_t* expert_ids;
  int32_t* post_pad;
  int32_t* scatter_idx;  // or nullptr
};

void align_cpu(const AlignProblem& p, const CpuBuffers& b);

}  // namespace vllm_moe_align
