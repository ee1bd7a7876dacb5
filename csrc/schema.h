// Every op of the library, defined once. Each frontend registers these
// schemas with its torch ABI (frontend/stable*.cpp: PyTorch's stable ABI, the
// default from torch 2.11; frontend/aten*.cpp: the C++ ABI of one torch
// release, for older torch) and binds the same kernels (ops.h) to them:
//   moe_align_block_size_out  cpu/align_cpu.cpp (CPU), cuda/ (CUDA)
//   moe_align_block_size      allocates, then runs the same kernel
//   fused_globalize_align_block_size_out
//                             cpu/globalize_cpu.cpp (CPU), cuda/globalize.cu
//                             then the align kernels (CUDA)
//   cuda_launch_plan, cuda_globalize_plan, preload_cuda_kernels, cuda_archs,
//   cuda_dependent_launch     cuda/cuda_host.cpp (no tensors)
// Two libraries: _C defines the align ops and has the CPU kernels; _C_cuda
// (a build with CUDA kernels) adds their CUDA kernels and defines the CUDA
// host ops. A torch without CUDA, or with another CUDA major, loads _C alone.
// Fake (meta) kernels for torch.compile: vllm_moe_align_plugin/_ops/fake.py.
#pragma once

namespace vllm_moe_align::schema {

// Out-variant, in vLLM's op-level argument order (num_experts before
// block_size), so it can stand in for torch.ops._moe_C.moe_align_block_size.
constexpr const char* kAlignOut =
    "moe_align_block_size_out(Tensor topk_ids, int num_experts, "
    "int block_size, Tensor(a!) sorted_token_ids, Tensor(b!) expert_ids, "
    "Tensor(c!) num_tokens_post_pad, Tensor? expert_map=None, "
    "Tensor(d!)? scatter_idx=None, bool ignore_invalid_experts=False, "
    "int expert_ids_tail=-1) -> ()";

// Allocating variant: returns (sorted_token_ids [max_num_tokens_padded],
// expert_ids [cdiv(max_num_tokens_padded, block_size)],
// num_tokens_post_pad [1], scatter_idx [numel, 1] or [0, 1]).
constexpr const char* kAlign =
    "moe_align_block_size(Tensor topk_ids, int num_experts, int block_size, "
    "int max_num_tokens_padded, Tensor? expert_map=None, "
    "bool ignore_invalid_experts=False, int expert_ids_tail=-1, "
    "bool return_scatter_idx=False) -> (Tensor, Tensor, Tensor, Tensor)";

// vLLM 0.33's fused_globalize_align_block_size as an out-variant (the
// contract: vllm_moe_align_plugin/globalize_reference.py): recv_topk_idx
// (int64 [N, topk], local ids) is rewritten in place to global ids (-1 for a
// dropped route); the number of real rows is psum_recv_per_rank[-1], read by
// the kernel, on the device. The caller allocates the outputs, of exactly
// the contract's sizes (M = sorted_ids' length from numel, the local expert
// count and block_size; expert_ids of cdiv(M, block_size); one
// num_tokens_post_pad; scatter_idx of numel, or none); the kernel writes
// every element. vLLM's op-level argument order.
constexpr const char* kGlobalizeOut =
    "fused_globalize_align_block_size_out(Tensor(a!) recv_topk_idx, "
    "Tensor psum_recv_per_rank, int rank_expert_offset, int global_num_experts, "
    "int local_num_experts, int block_size, Tensor(b!) sorted_ids, "
    "Tensor(c!) expert_ids, Tensor(d!) num_tokens_post_pad, "
    "Tensor(e!)? scatter_idx=None) -> ()";

// The CUDA backend's launch plan for these sizes on a GPU with num_sms SMs
// and smem_optin_bytes of opt-in shared memory per block. Host code: no GPU
// needed. Fields, in order: regime (0 tiny, 1 spread, 2 tiled with the
// prefix in each CTA, 3 tiled with the scan kernel), kernel launches, CTAs
// per launch, routes per tile, threads per CTA, histogram warps, dynamic
// shared memory bytes, scratch ints, fits (1 or 0).
constexpr const char* kLaunchPlan =
    "cuda_launch_plan(int numel, int num_experts, int block_size, int sorted_size, "
    "bool map_while_counting, int num_sms, int smem_optin_bytes) -> int[]";

// The CUDA backend's plan for a fused_globalize_align_block_size_out call
// of numel routes over local_num_experts local experts and blocks of
// block_size, on a GPU with num_sms SMs and smem_optin_bytes of opt-in shared
// memory per block. Host code: no GPU needed. Fields, in order: fused (1: one
// launch of one CTA; 0: the align kernels), kernel launches, threads per CTA
// of the fused kernel or of the globalize pass (0: neither), the fused
// kernel's dynamic shared memory bytes, the CTAs of the fused kernel or of
// the pass (0: neither), the align kernels' regime (as cuda_launch_plan's;
// -1 when fused), and folded (1: the tiled align kernels globalize as they
// go, with no pass).
constexpr const char* kGlobalizePlan =
    "cuda_globalize_plan(int numel, int local_num_experts, int block_size, int num_sms, "
    "int smem_optin_bytes) -> int[]";

// Loads the CUDA kernels on `device` ahead of the first call.
constexpr const char* kPreload = "preload_cuda_kernels(int device) -> ()";

// Programmatic dependent launch of the CUDA kernels, for the whole process:
// `enabled` given turns it on or off; returns the setting now in force. On,
// each kernel may start while the previous kernel in its stream finishes
// (compute capability 9.0 and newer; other GPUs launch as before). Off by
// default.
constexpr const char* kDependentLaunch = "cuda_dependent_launch(bool? enabled=None) -> bool";

// The CUDA archs this library was built for, separated by spaces ("" in a
// CPU-only build).
constexpr const char* kArchs = "cuda_archs() -> str";

}  // namespace vllm_moe_align::schema
