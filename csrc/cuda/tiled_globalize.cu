// The tiled kernels of fused_globalize_align_block_size_out's larger calls
// (tiled.cuh with kGlobalize: each route's bin is its local id when it is
// kept, and the scatter rewrites the tile's ids in place), in a module of
// their own (kernels.h says why).
#include "tiled.cuh"

namespace vllm_moe_align {
namespace {

__global__ void __launch_bounds__(kThreads)
    count_tiles_globalize_kernel(const int64_t* __restrict__ ids, Params p, GlobalizeArgs g) {
  await_stream_inputs();
  count_tiles<true>(ids, p, Globalize::of(g));
}

template <bool kPrefixHere>
__global__ void __launch_bounds__(kThreads, 1)
    scatter_tiles_globalize_kernel(const int64_t* __restrict__ ids, Params p, GlobalizeArgs g) {
  await_stream_inputs();
  scatter_tiles<kPrefixHere, true>(ids, p, g);
}

}  // namespace

cudaError_t launch_tiled_globalize(const AlignProblem& c, const AlignBuffers& b,
                                   const LaunchPlan& plan, const GlobalizeArgs& g, int device,
                                   int smem_optin_bytes, cudaStream_t stream) {
  const Params p = to_params(c, b, plan);
  const int64_t* ids = g.ids;
  return launch_tiles<count_tiles_globalize_kernel, scatter_tiles_globalize_kernel<true>,
                      scatter_tiles_globalize_kernel<false>>(p, plan, device, smem_optin_bytes,
                                                             stream, ids, p, g);
}

cudaError_t preload_tiled_globalize() {
  return query_all<count_tiles_globalize_kernel, scan_tiles_kernel,
                   scatter_tiles_globalize_kernel<true>, scatter_tiles_globalize_kernel<false>>();
}

}  // namespace vllm_moe_align
