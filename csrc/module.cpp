// Importing vllm_moe_align_plugin._C loads this library, and the static
// initialisers of the frontend (its TORCH_LIBRARY or STABLE_TORCH_LIBRARY
// blocks) register the ops. The module itself is empty and uses only
// Python's limited API, so one library serves every Python 3 version.
#include <Python.h>

extern "C" PyObject* PyInit__C(void) {
  static PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
