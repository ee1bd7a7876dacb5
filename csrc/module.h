// Each library is an empty Python extension module: importing
// vllm_moe_align_plugin._C (or _C_cuda) loads it, and the static initialisers
// of its registration file (TORCH_LIBRARY or STABLE_TORCH_LIBRARY blocks)
// register the ops. Only Python's limited API is used.
#pragma once

#include <Python.h>

// Defines PyInit_<name>, the module's entry point, in a library's
// registration file.
#define VLLM_MOE_ALIGN_PYTHON_MODULE(name)                                       \
  extern "C" PyObject* PyInit_##name(void) {                                    \
    static PyModuleDef module_def = {PyModuleDef_HEAD_INIT, #name, nullptr, -1, \
                                     nullptr};                                  \
    return PyModule_Create(&module_def);                                        \
  }
