// The op's schema (one definition for every backend), the argument checks every
// backend runs, and the allocating variant, which sizes the outputs and then
// calls the out-variant of whichever backend owns topk_ids.
#include "moe_align.h"

#include <Python.h>

#include <algorithm>

namespace vllm_moe_align {

int64_t max_padded_routes(int64_t numel, int64_t num_experts,
                          int64_t block_size) {
  // Each expert pads its share to a multiple of block_size (at most
  // block_size - 1 extra slots), and an expert with c >= 1 routes pads to at
  // most c * block_size slots.
  return std::min(numel + num_experts * (block_size - 1), numel * block_size);
}

namespace {

// Messages are assembled from strings only: an extension compiled with newer
// libstdc++ headers than the process's libstdc++ crashed when iostreams
// formatted an integer (seen on the H100 image, GCC 13 headers); std::to_string
// does not go through iostreams.
std::string str(int64_t v) { return std::to_string(v); }
std::string str(const at::Tensor& t, bool device) {
  if (device) return t.device().str();
  std::string out = "[";
  for (int64_t d = 0; d < t.dim(); ++d) out += (d ? ", " : "") + std::to_string(t.size(d));
  return out + "]";
}
const char* str(at::ScalarType t) { return c10::toString(t); }

// The ids' dtype (the signed integer types and uint8, which every backend
// reads) and count (so every index fits in int32), checked before anything is
// allocated.
void check_topk_ids(const at::Tensor& topk_ids) {
  const at::ScalarType t = topk_ids.scalar_type();
  TORCH_CHECK_TYPE(t == at::kLong || t == at::kInt || t == at::kShort || t == at::kChar ||
                       t == at::kByte,
                   "topk_ids must be an integer tensor (int64, int32, int16, int8 or uint8), got ",
                   str(t));
  const int64_t numel = topk_ids.numel();
  TORCH_CHECK_VALUE(numel <= kMaxRoutes, "topk_ids has ", str(numel),
                    " elements; at most ", str(kMaxRoutes), " are supported");
}

void check_int32_buffer(const at::Tensor& t, const char* name,
                        const at::Tensor& topk_ids) {
  TORCH_CHECK_TYPE(t.scalar_type() == at::kInt, name,
              " must be an int32 tensor, got ", str(t.scalar_type()));
  TORCH_CHECK_VALUE(t.device() == topk_ids.device(), name,
              " must be on the same device as topk_ids (", str(topk_ids, true),
              "), got ", str(t, true));
  TORCH_CHECK_VALUE(t.is_contiguous(), name, " must be contiguous");
}

}  // namespace

void check_experts_and_block_size(int64_t num_experts, int64_t block_size) {
  TORCH_CHECK_VALUE(num_experts >= 1 && num_experts <= kMaxExperts,
              "num_experts must be in [1, ", str(kMaxExperts), "], got ", str(num_experts));
  TORCH_CHECK_VALUE(block_size >= 1 && block_size <= kMaxBlockSize,
              "block_size must be in [1, ", str(kMaxBlockSize), "], got ", str(block_size));
}

AlignProblem check_align_args(const at::Tensor& topk_ids, int64_t num_experts,
                              int64_t block_size,
                              const at::Tensor& sorted_token_ids,
                              const at::Tensor& expert_ids,
                              const at::Tensor& num_tokens_post_pad,
                              const std::optional<at::Tensor>& expert_map,
                              const std::optional<at::Tensor>& scatter_idx,
                              bool ignore_invalid_experts,
                              int64_t expert_ids_tail) {
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
    TORCH_CHECK_TYPE(m.scalar_type() == at::kInt,
                "expert_map must be an int32 tensor, got ", str(m.scalar_type()));
    TORCH_CHECK_VALUE(m.device() == topk_ids.device(),
                "expert_map must be on the same device as topk_ids (",
                str(topk_ids, true), "), got ", str(m, true));
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

namespace {

// The allocating variant: one call from Python does the allocation (with the
// caching allocator: no kernel, no fill) and the work. Every element of every
// output is then written by the backend's out-variant.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> align_alloc(
    const at::Tensor& topk_ids, int64_t num_experts, int64_t block_size,
    int64_t max_num_tokens_padded, const std::optional<at::Tensor>& expert_map,
    bool ignore_invalid_experts, int64_t expert_ids_tail,
    bool return_scatter_idx) {
  check_topk_ids(topk_ids);
  TORCH_CHECK_VALUE(block_size >= 1 && block_size <= kMaxBlockSize,
              "block_size must be in [1, ", str(kMaxBlockSize), "], got ", str(block_size));
  TORCH_CHECK_VALUE(num_experts >= 1 && num_experts <= kMaxExperts,
              "num_experts must be in [1, ", str(kMaxExperts), "], got ", str(num_experts));
  const int64_t need = max_padded_routes(topk_ids.numel(), num_experts, block_size);
  TORCH_CHECK_VALUE(max_num_tokens_padded >= need && max_num_tokens_padded <= INT32_MAX,
              "max_num_tokens_padded must be in [", str(need), ", 2^31) for ",
              str(topk_ids.numel()), " routes, num_experts=", str(num_experts),
              ", block_size=", str(block_size), "; got ", str(max_num_tokens_padded));
  const auto opts = topk_ids.options().dtype(at::kInt);
  const int64_t numel = topk_ids.numel();
  at::Tensor sorted_ids = at::empty({max_num_tokens_padded}, opts);
  at::Tensor expert_ids = at::empty(
      {(max_num_tokens_padded + block_size - 1) / block_size}, opts);
  at::Tensor post_pad = at::empty({1}, opts);
  at::Tensor scatter =
      at::empty({return_scatter_idx ? numel : 0, 1}, opts);

  static auto out_op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("vllm_moe_align::moe_align_block_size_out", "")
          .typed<void(const at::Tensor&, int64_t, int64_t, at::Tensor&,
                      at::Tensor&, at::Tensor&,
                      const std::optional<at::Tensor>&,
                      const std::optional<at::Tensor>&, bool, int64_t)>();
  std::optional<at::Tensor> scatter_arg;
  if (return_scatter_idx) scatter_arg = scatter;
  out_op.call(topk_ids, num_experts, block_size, sorted_ids, expert_ids,
              post_pad, expert_map, scatter_arg, ignore_invalid_experts,
              expert_ids_tail);
  return {sorted_ids, expert_ids, post_pad, scatter};
}

}  // namespace

TORCH_LIBRARY(vllm_moe_align, m) {
  // Out-variant, in vLLM's op-level argument order (num_experts before
  // block_size), so it can stand in for torch.ops._moe_C.moe_align_block_size.
  m.def(
      "moe_align_block_size_out(Tensor topk_ids, int num_experts, "
      "int block_size, Tensor(a!) sorted_token_ids, Tensor(b!) expert_ids, "
      "Tensor(c!) num_tokens_post_pad, Tensor? expert_map=None, "
      "Tensor(d!)? scatter_idx=None, bool ignore_invalid_experts=False, "
      "int expert_ids_tail=-1) -> ()");
  // Allocating variant: returns (sorted_token_ids [max_num_tokens_padded],
  // expert_ids [cdiv(max_num_tokens_padded, block_size)],
  // num_tokens_post_pad [1], scatter_idx [numel, 1] or [0, 1]).
  m.def(
      "moe_align_block_size(Tensor topk_ids, int num_experts, int block_size, "
      "int max_num_tokens_padded, Tensor? expert_map=None, "
      "bool ignore_invalid_experts=False, int expert_ids_tail=-1, "
      "bool return_scatter_idx=False) -> (Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(vllm_moe_align, CompositeExplicitAutograd, m) {
  m.impl("moe_align_block_size", &align_alloc);
}

}  // namespace vllm_moe_align

// Importing vllm_moe_align_plugin._C registers the ops. The module's only
// function reports the CUDA archs the library was built for ("" if CPU-only).
// setup.py passes them as one token, e.g. 7.5_8.0_9.0a.
#define VLLM_MOE_ALIGN_STR2(x) #x
#define VLLM_MOE_ALIGN_STR(x) VLLM_MOE_ALIGN_STR2(x)

static PyObject* cuda_archs(PyObject*, PyObject*) {
#ifdef VLLM_MOE_ALIGN_CUDA_ARCHS
  return PyUnicode_FromString(VLLM_MOE_ALIGN_STR(VLLM_MOE_ALIGN_CUDA_ARCHS));
#else
  return PyUnicode_FromString("");
#endif
}

#ifdef VLLM_MOE_ALIGN_CUDA_ARCHS
// Runs f (which returns a new reference or nullptr with an error set) and turns
// C++ exceptions into Python ones: ValueError for torch's value errors,
// RuntimeError for the rest (CUDA errors among them).
template <typename F>
static PyObject* with_python_errors(F f) {
  try {
    return f();
  } catch (const c10::ValueError& e) {
    PyErr_SetString(PyExc_ValueError, e.what_without_backtrace());
  } catch (const c10::Error& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what_without_backtrace());
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  }
  return nullptr;
}
#endif

// preload_cuda_kernels(device: int) -> None; RuntimeError on a CUDA error,
// NotImplementedError in a CPU-only build.
static PyObject* preload_cuda_kernels(PyObject*, PyObject* arg) {
  const long long device = PyLong_AsLongLong(arg);
  if (device == -1 && PyErr_Occurred()) return nullptr;
#ifdef VLLM_MOE_ALIGN_CUDA_ARCHS
  return with_python_errors([&]() -> PyObject* {
    vllm_moe_align::preload_cuda_kernels(device);
    Py_RETURN_NONE;
  });
#else
  PyErr_SetString(PyExc_NotImplementedError, "this build has no CUDA kernels");
  return nullptr;
#endif
}

// cuda_launch_plan(numel, num_experts, block_size, sorted_size,
//                  map_while_counting, num_sms, smem_optin_bytes) -> tuple of
// ints (see describe_cuda_plan); ValueError naming a bad argument,
// NotImplementedError in a CPU-only build. Host code: no GPU needed.
static PyObject* cuda_launch_plan(PyObject*, PyObject* args) {
  long long numel, num_experts, block_size, sorted_size, num_sms, smem_optin;
  int map_in;
  if (!PyArg_ParseTuple(args, "LLLLpLL", &numel, &num_experts, &block_size, &sorted_size,
                        &map_in, &num_sms, &smem_optin))
    return nullptr;
#ifdef VLLM_MOE_ALIGN_CUDA_ARCHS
  return with_python_errors([&]() -> PyObject* {
    const std::vector<int64_t> v = vllm_moe_align::describe_cuda_plan(
        numel, num_experts, block_size, sorted_size, map_in != 0, num_sms, smem_optin);
    PyObject* out = PyTuple_New(static_cast<Py_ssize_t>(v.size()));
    if (out == nullptr) return nullptr;
    for (size_t i = 0; i < v.size(); ++i) {
      PyObject* x = PyLong_FromLongLong(v[i]);
      if (x == nullptr) {
        Py_DECREF(out);
        return nullptr;
      }
      PyTuple_SET_ITEM(out, static_cast<Py_ssize_t>(i), x);
    }
    return out;
  });
#else
  PyErr_SetString(PyExc_NotImplementedError, "this build has no CUDA kernels");
  return nullptr;
#endif
}

static PyMethodDef module_methods[] = {
    {"cuda_archs", cuda_archs, METH_NOARGS, "CUDA archs of this build"},
    {"preload_cuda_kernels", preload_cuda_kernels, METH_O,
     "load the CUDA kernels on a device ahead of the first call"},
    {"cuda_launch_plan", cuda_launch_plan, METH_VARARGS,
     "the CUDA backend's launch plan for given sizes (host code, no GPU needed)"},
    {nullptr, nullptr, 0, nullptr}};

extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1,
                                          module_methods};
  return PyModule_Create(&module_def);
}
