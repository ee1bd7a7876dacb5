# Two commands on a fresh machine:  make demo  |  make test
# (make test-gpu is for a GPU machine that already has torch and no network.)
PYTHON ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
VLLM_VERSION ?= 0.33.0
# Test and tool dependencies installed next to vLLM.
DEV_DEPS := pytest hypothesis ruff matplotlib ninja wheel "setuptools>=64"
DEPS_STAMP := $(VENV)/.deps-vllm-$(VLLM_VERSION)

.PHONY: demo demo-gpu test test-gpu build-inplace sanitize-gpu bench-gpu lint install deps clean

demo: install
	$(VENV)/bin/vllm-moe-align info
	$(VENV)/bin/vllm-moe-align verify
	$(VENV)/bin/vllm-moe-align bench --quick

test: install
	$(VPY) -m pytest -q

# The virtual environment with torch and vLLM from PyPI (vLLM brings its torch).
$(DEPS_STAMP):
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q "vllm==$(VLLM_VERSION)" $(DEV_DEPS)
	touch $@

deps: $(DEPS_STAMP)

# Builds the plugin (CPU kernel, and CUDA kernel when torch and nvcc allow)
# into the environment; ninja rebuilds only what changed.
install: $(DEPS_STAMP)
	$(VPY) -m pip install -q --no-build-isolation --no-deps -e .

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

# compute-sanitizer over a grid that covers every CUDA code path.
sanitize-gpu: build-inplace
	compute-sanitizer --tool memcheck --error-exitcode 1 $(PYTHON) tests/sanitizer_grid.py
	compute-sanitizer --tool racecheck --racecheck-report all --error-exitcode 1 $(PYTHON) tests/sanitizer_grid.py

bench-gpu: build-inplace
	$(PYTHON) benchmarks/benchmark_moe_align_block_size.py $(BENCH_ARGS)

lint:
	$(VPY) -m ruff check vllm_moe_align_plugin tests benchmarks setup.py

clean:
	rm -rf build *.egg-info vllm_moe_align_plugin/_C*.so
