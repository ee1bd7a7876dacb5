"""vLLM 0.33.0's own test file for ``fused_globalize_align_block_size``, run
against the plugin (GPU only: every case of that file is a CUDA case).

The file is read from the vLLM 0.33.0 sdist (PyPI, cached in
``.cache/vllm-sdists/`` like the patch tests), or from the directory named by
``VLLM_MOE_ALIGN_VLLM_TESTS`` where PyPI cannot be reached. It runs unchanged
in a pytest subprocess whose ``vllm`` is a stand-in package written below,
binding exactly the names the file imports:

- ``fused_globalize_align_block_size``: the plugin's function, under test;
- the two-step chain the file compares it with: ``_globalize_recv_topk_idx``
  (DeepEP v2's globalize step: a local id ``v`` of a row below ``num_recv``
  becomes ``v + rank_expert_offset`` when that is ``< num_experts``, every
  other slot ``-1``) and ``moe_align_block_size`` (vLLM 0.33's contract),
  both from the plugin's pure-torch oracles;
- ``current_platform.is_cuda()`` and ``has_deep_ep_v2()``, which gate the file.

So vLLM's checks (in-place globalize, ``num_tokens_post_pad``, used expert
ids, tails, each expert's routes as a set, ``scatter_idx``, CUDA-graph replay
with new inputs) judge the plugin against the chain the op replaces.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from patches import make_patches

RELEASE = "0.33.0"
MEMBER = "tests/kernels/moe/test_fused_globalize_align_block_size.py"
TESTS_ENV = "VLLM_MOE_ALIGN_VLLM_TESTS"

#: the stand-in ``vllm`` package: module path -> source
SHIM = {
    "vllm/__init__.py": '"""Stand-in for the names vLLM\'s globalize test imports."""\n',
    "vllm/platforms/__init__.py": (
        "import torch\n\n\n"
        "class _Platform:\n"
        "    @staticmethod\n"
        "    def is_cuda() -> bool:\n"
        "        return torch.cuda.is_available()\n\n\n"
        "current_platform = _Platform()\n"
    ),
    "vllm/utils/__init__.py": "",
    "vllm/utils/import_utils.py": (
        "def has_deep_ep_v2() -> bool:\n"
        "    return True  # the chain's globalize step is the stand-in below\n"
    ),
    "vllm/model_executor/__init__.py": "",
    "vllm/model_executor/layers/__init__.py": "",
    "vllm/model_executor/layers/fused_moe/__init__.py": "",
    "vllm/model_executor/layers/fused_moe/fused_globalize_align_block_size.py": (
        "from vllm_moe_align_plugin import fused_globalize_align_block_size  # noqa: F401\n"
    ),
    "vllm/model_executor/layers/fused_moe/moe_align_block_size.py": (
        "from vllm_moe_align_plugin.contract import V0_31\n"
        "from vllm_moe_align_plugin.reference import moe_align_block_size_reference\n\n\n"
        "def moe_align_block_size(topk_ids, block_size, num_experts, expert_map=None,\n"
        "                         pad_sorted_ids=False, ignore_invalid_experts=False,\n"
        "                         return_scatter_idx=False):\n"
        "    return moe_align_block_size_reference(\n"
        "        topk_ids, block_size, num_experts, expert_map, pad_sorted_ids,\n"
        "        ignore_invalid_experts, return_scatter_idx, contract=V0_31)\n"
    ),
    "vllm/model_executor/layers/fused_moe/prepare_finalize/__init__.py": "",
    "vllm/model_executor/layers/fused_moe/prepare_finalize/deepep_v2.py": (
        "import torch\n\n\n"
        "def _globalize_recv_topk_idx(recv_topk_idx, psum_recv_per_rank, rank_expert_offset,\n"
        "                             num_experts):\n"
        "    local = recv_topk_idx\n"
        "    glob = local + rank_expert_offset\n"
        "    rows = torch.arange(local.shape[0], device=local.device).unsqueeze(1)\n"
        "    real = rows < psum_recv_per_rank[-1].to(torch.int64)\n"
        "    valid = (local >= 0) & (glob < num_experts) & real\n"
        "    recv_topk_idx.copy_(torch.where(valid, glob, -1))\n"
        "    return recv_topk_idx\n"
    ),
}


def write_shim(dest: Path) -> Path:
    for rel, text in SHIM.items():
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return dest


def vllm_test_file(dest: Path) -> Path:
    """vLLM 0.33.0's test file, copied to ``dest`` (from TESTS_ENV's directory
    or the sdist)."""
    out = dest / Path(MEMBER).name
    where = os.environ.get(TESTS_ENV)
    if where:
        out.write_bytes((Path(where) / out.name).read_bytes())
        return out
    try:
        archive = make_patches.sdist(RELEASE)
    except make_patches.FetchError as exc:
        pytest.skip(f"vLLM {RELEASE} sdist unavailable ({exc}); or set {TESTS_ENV}")
    with tarfile.open(archive) as tar:
        member = next(m for m in tar.getmembers() if m.name.split("/", 1)[-1] == MEMBER)
        src = tar.extractfile(member)
        assert src is not None
        out.write_bytes(src.read())
    return out


def test_the_shim_stands_in_for_what_the_file_imports(tmp_path: Path) -> None:
    """CPU: the stand-in's chain equals the oracle of the fused op on the used
    part (so a GPU run judges the plugin against the right chain)."""
    from vllm_moe_align_plugin.globalize_reference import (
        fused_globalize_align_block_size_reference as fused_ref,
    )

    root = write_shim(tmp_path / "shim")
    probe = r"""
import sys, torch
from vllm.model_executor.layers.fused_moe.prepare_finalize.deepep_v2 import _globalize_recv_topk_idx
from vllm.model_executor.layers.fused_moe.moe_align_block_size import moe_align_block_size
local = torch.load(sys.argv[1])
psum = torch.tensor([0, 5], dtype=torch.int32)
glob = _globalize_recv_topk_idx(local.clone(), psum, 8, 32)
emap = torch.full((32,), -1, dtype=torch.int32)
emap[8:16] = torch.arange(8, dtype=torch.int32)
out = moe_align_block_size(glob, 4, 32, expert_map=emap, ignore_invalid_experts=True,
                           return_scatter_idx=True)
torch.save((glob, *out), sys.argv[2])
"""
    local = torch.randint(-1, 8, (7, 3), generator=torch.Generator().manual_seed(1))
    torch.save(local, tmp_path / "in.pt")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(root), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    done = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "in.pt"),
                           str(tmp_path / "out.pt")], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    glob, sorted_ids, expert_ids, post_pad, scatter = torch.load(tmp_path / "out.pt")
    want = fused_ref(local.clone(), torch.tensor([0, 5], dtype=torch.int32), 8, 32, 8, 4, True)
    assert torch.equal(glob, want[0])
    total = int(post_pad.item())
    assert total == int(want[3].item())
    assert torch.equal(sorted_ids[:total], want[1][:total])
    assert torch.equal(expert_ids[: total // 4], want[2][: total // 4])
    assert torch.equal(scatter, want[4])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="vLLM's globalize test is CUDA-only")
def test_vllms_globalize_test_file_passes_against_the_plugin(tmp_path: Path) -> None:
    if not torch._C._dispatch_has_kernel_for_dispatch_key(
            "vllm_moe_align::fused_globalize_align_block_size_out", "CUDA"):
        pytest.skip("this build has no CUDA kernel for the globalize op")
    root = write_shim(tmp_path / "shim")
    test_file = vllm_test_file(tmp_path)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(root), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(test_file)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=1800)
    tail = (done.stdout + done.stderr)[-4000:]
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, tail
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) > 0, tail
    assert not re.search(r"failed|error|skipped", summary), tail
    print(summary)
