// CUDA kernel of the out-variant: validates, turns tensors into kernel
// parameters, allocates the (uninitialised) scratch, and launches on the
// current stream of topk_ids' device. The launch sizes come from plan_launch
// (plan.cpp); the kernels are in tiny.cu, spread.cu and tiled.cu.
#include "../checks.h"
#include "kernels.h"

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <string>

namespace vllm_moe_align {
namespace {

void align_out_cuda(const at::Tensor& topk_ids, int64_t num_experts, int64_t block_size,
                    at::Tensor& sorted_token_ids, at::Tensor& expert_ids,
                    at::Tensor& num_tokens_post_pad, const std::optional<at::Tensor>& expert_map,
                    const std::optional<at::Tensor>& scatter_idx, bool ignore_invalid_experts,
                    int64_t expert_ids_tail) {
  const AlignProblem prob = check_align_args(
      topk_ids, num_experts, block_size, sorted_token_ids, expert_ids, num_tokens_post_pad,
      expert_map, scatter_idx, ignore_invalid_experts, expert_ids_tail);
  const c10::cuda::CUDAGuard guard(topk_ids.device());
  const int device = topk_ids.get_device();
  const cudaDeviceProp& dev = *at::cuda::getDeviceProperties(device);  // cached by torch
  const int smem_optin = static_cast<int>(dev.sharedMemPerBlockOptin);

  // int32 and int64 ids are read as they are; narrower ones are widened once.
  at::Tensor ids = topk_ids.contiguous();
  if (ids.scalar_type() != at::kInt && ids.scalar_type() != at::kLong) ids = ids.to(at::kInt);

  const LaunchPlan plan = plan_launch(static_cast<int>(prob.numel),
                                      static_cast<int>(prob.num_experts),
                                      static_cast<int>(prob.block_size),
                                      static_cast<int>(prob.sorted_size),
                                      prob.map_while_counting,
                                      dev.multiProcessorCount, smem_optin);
  TORCH_CHECK_VALUE(plan.fits, "num_experts=", std::to_string(num_experts),
                    " needs more shared memory than this GPU offers per block");
  at::Tensor scratch;
  KernelParams k{};
  if (plan.scratch_ints > 0) {
    // Written before it is read by the kernels: no initialisation needed.
    scratch = at::empty({static_cast<int64_t>(plan.scratch_ints)},
                        topk_ids.options().dtype(at::kInt));
    k.scratch = scratch.data_ptr<int32_t>();
  }
  k.ids = ids.data_ptr();
  k.ids_int64 = ids.scalar_type() == at::kLong;
  k.map = prob.has_map ? expert_map->data_ptr<int32_t>() : nullptr;
  k.sorted_ids = sorted_token_ids.data_ptr<int32_t>();
  k.expert_ids = expert_ids.data_ptr<int32_t>();
  k.post_pad = num_tokens_post_pad.data_ptr<int32_t>();
  k.scatter_idx = prob.has_scatter_idx ? scatter_idx->data_ptr<int32_t>() : nullptr;
  k.numel = static_cast<int>(prob.numel);
  k.num_experts = static_cast<int>(prob.num_experts);
  k.block_size = static_cast<int>(prob.block_size);
  k.sorted_size = static_cast<int>(prob.sorted_size);
  k.expert_ids_size = static_cast<int>(prob.expert_ids_size);
  k.expert_ids_tail = static_cast<int>(prob.expert_ids_tail);
  k.map_in = prob.map_while_counting;
  k.map_out = prob.has_map && !prob.map_while_counting;
  C10_CUDA_CHECK(launch_align(k, plan, device, smem_optin, at::cuda::getCurrentCUDAStream()));
}

}  // namespace

TORCH_LIBRARY_IMPL(vllm_moe_align, CUDA, m) {
  m.impl("moe_align_block_size_out", &align_out_cuda);
}

}  // namespace vllm_moe_align
