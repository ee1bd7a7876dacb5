// Globalize pass of fused_globalize_align_block_size_out (the contract:
// vllm_moe_align_plugin/globalize_reference.py). One launch, one route a
// thread: it reads the number of real rows from psum_recv_per_rank on the
// device, writes each route's bin (its local id, or -1 when the route is
// dropped) to `bins`, and rewrites the id in place to its global id, or -1.
// The align kernels (tiny.cu, spread.cu, tiled.cu) then sort `bins` over the
// local experts, the -1s dropped, and write every output. A separate launch
// because the align kernels read the ids more than once and from several
// CTAs (spread: every CTA reads every route), so no CTA of theirs could
// rewrite an id while another may still read it.
#include "common.cuh"

namespace vllm_moe_align {
namespace {

__global__ void __launch_bounds__(kGlobalizeThreads)
    globalize_kernel(int64_t* __restrict__ ids, const int32_t* __restrict__ psum_last,
                     int32_t* __restrict__ bins, int numel, int topk, int local_experts,
                     long long rank_offset, long long global_experts) {
  // Route i is in row i / topk, a real row when that is < num_recv, that is
  // when i < num_recv * topk: no division per route.
  const long long real_routes = static_cast<long long>(__ldg(psum_last)) * topk;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < numel; i += gridDim.x * blockDim.x) {
    const int local = static_cast<int>(ids[i]);  // read as a 32-bit int, as vLLM's kernel does
    const long long global = local + rank_offset;
    const bool valid =
        local >= 0 && local < local_experts && global < global_experts && i < real_routes;
    bins[i] = valid ? local : -1;
    ids[i] = valid ? global : -1;
  }
}

}  // namespace

cudaError_t launch_globalize(const GlobalizeProblem& p, const GlobalizeBuffers& b, int32_t* bins,
                             int num_sms, cudaStream_t stream) {
  if (p.numel == 0) return cudaSuccess;
  globalize_kernel<<<globalize_ctas(static_cast<int>(p.numel), num_sms), kGlobalizeThreads, 0,
                     stream>>>(b.ids, b.psum + (p.psum_size - 1), bins, static_cast<int>(p.numel),
                               static_cast<int>(p.topk), static_cast<int>(p.local_num_experts),
                               p.rank_expert_offset, p.global_num_experts);
  return cudaGetLastError();
}

cudaError_t preload_globalize() { return query_all<globalize_kernel>(); }

}  // namespace vllm_moe_align
