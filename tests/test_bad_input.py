"""Bad input: a clear error naming the argument; never a crash or a write
outside the buffers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from helpers import POISON, poisoned, random_routes

from vllm_moe_align_plugin import _ops, api, binary, moe_align_block_size
from vllm_moe_align_plugin._ops import checks
from vllm_moe_align_plugin.contract import NEWEST
from vllm_moe_align_plugin.reference import moe_align_block_size_reference as reference

OUT = torch.ops.vllm_moe_align.moe_align_block_size_out


def _buffers(numel: int, experts: int, block: int, device: str) -> tuple[torch.Tensor, ...]:
    size = numel + experts * (block - 1)
    return poisoned(size, device), poisoned((size + block - 1) // block, device), poisoned(1, device)


def test_float_ids(device: str) -> None:
    with pytest.raises(TypeError, match="topk_ids must be an integer tensor"):
        moe_align_block_size(torch.zeros(4, 2, device=device), 16, 8)


def test_bool_ids(device: str) -> None:
    with pytest.raises(TypeError, match="topk_ids must be an integer tensor"):
        moe_align_block_size(torch.zeros(4, dtype=torch.bool, device=device), 16, 8)


def test_ids_not_a_tensor() -> None:
    with pytest.raises(TypeError, match="topk_ids must be a torch.Tensor"):
        moe_align_block_size([[1, 2]], 16, 8)  # type: ignore[arg-type]


@pytest.mark.parametrize("num_experts", [0, -3, 4097])
def test_num_experts_out_of_range(device: str, num_experts: int) -> None:
    ids = torch.zeros(4, dtype=torch.int32, device=device)
    with pytest.raises(ValueError, match="num_experts must be in"):
        moe_align_block_size(ids, 16, num_experts)


@pytest.mark.parametrize("block_size", [0, -1, 1025])
def test_block_size_out_of_range(device: str, block_size: int) -> None:
    ids = torch.zeros(4, dtype=torch.int32, device=device)
    with pytest.raises(ValueError, match="block_size must be in"):
        moe_align_block_size(ids, block_size, 8)


@pytest.mark.parametrize("arg", ["block_size", "num_experts"])
def test_non_int_sizes(arg: str) -> None:
    ids = torch.zeros(4, dtype=torch.int32)
    kwargs = {"block_size": 16, "num_experts": 8, arg: 16.0}
    with pytest.raises(TypeError, match=f"{arg} must be an int"):
        moe_align_block_size(ids, **kwargs)


def test_seed_example_passes_top_k_as_expert_map() -> None:
    """The user's seed script calls moe_align_block_size(topk_ids, num_experts,
    block_size, topk): top_k lands in expert_map. The error says so."""
    ids = torch.randint(0, 64, (4096 * 2,), dtype=torch.int32)
    with pytest.raises(TypeError, match="expert_map must be a torch.Tensor or None.*top_k"):
        moe_align_block_size(ids, 64, 128, 2)  # type: ignore[arg-type]


def test_expert_map_wrong_dtype(device: str) -> None:
    ids = torch.zeros(4, dtype=torch.int32, device=device)
    emap = torch.arange(8, dtype=torch.int64, device=device)
    with pytest.raises(TypeError, match="expert_map must be an int32 tensor"):
        moe_align_block_size(ids, 16, 8, emap)


@pytest.mark.parametrize("length", [7, 9])
def test_expert_map_wrong_length(device: str, length: int) -> None:
    ids = torch.zeros(4, dtype=torch.int32, device=device)
    emap = torch.arange(length, dtype=torch.int32, device=device)
    with pytest.raises(ValueError, match="expert_map must be a 1-D tensor of num_experts=8"):
        moe_align_block_size(ids, 16, 8, emap)


def test_expert_map_2d(device: str) -> None:
    ids = torch.zeros(4, dtype=torch.int32, device=device)
    emap = torch.arange(8, dtype=torch.int32, device=device).view(2, 4)
    with pytest.raises(ValueError, match="expert_map must be a 1-D tensor"):
        moe_align_block_size(ids, 16, 8, emap)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_ids_and_map_on_different_devices() -> None:
    ids = torch.zeros(4, dtype=torch.int32, device="cuda")
    emap = torch.arange(8, dtype=torch.int32)
    with pytest.raises(ValueError, match="expert_map must be on the same device as topk_ids"):
        moe_align_block_size(ids, 16, 8, emap)
    with pytest.raises(ValueError, match="expert_map must be on the same device as topk_ids"):
        moe_align_block_size(ids.cpu(), 16, 8, emap.cuda())


def test_scatter_idx_with_map_needs_ignore(device: str) -> None:
    ids = torch.zeros(4, dtype=torch.int32, device=device)
    emap = torch.arange(8, dtype=torch.int32, device=device)
    with pytest.raises(ValueError, match="requires ignore_invalid_experts"):
        moe_align_block_size(ids, 16, 8, emap, return_scatter_idx=True)


def test_out_buffer_too_small(device: str) -> None:
    ids = random_routes(100, 8, device=device)
    sorted_ids, expert_ids, post_pad = _buffers(100, 8, 16, device)
    with pytest.raises(ValueError, match="sorted_token_ids has"):
        OUT(ids, 8, 16, sorted_ids[:-1], expert_ids, post_pad)
    with pytest.raises(ValueError, match="expert_ids has"):
        OUT(ids, 8, 16, sorted_ids, expert_ids[:-1], post_pad)
    with pytest.raises(ValueError, match="num_tokens_post_pad must have exactly one element"):
        OUT(ids, 8, 16, sorted_ids, expert_ids, poisoned(2, device))
    with pytest.raises(ValueError, match="scatter_idx must have 100 elements"):
        OUT(ids, 8, 16, sorted_ids, expert_ids, post_pad, None, poisoned(99, device), False, -1)
    # nothing was written by the refused calls
    assert (sorted_ids == POISON).all() and (expert_ids == POISON).all()


@pytest.mark.parametrize("which", ["sorted_token_ids", "expert_ids", "num_tokens_post_pad"])
def test_out_buffer_wrong_dtype(device: str, which: str) -> None:
    ids = random_routes(10, 8, device=device)
    bufs = dict(zip(("sorted_token_ids", "expert_ids", "num_tokens_post_pad"),
                    _buffers(10, 8, 4, device)))
    bufs[which] = bufs[which].to(torch.int64)
    # The op itself: PyTorch's stable ABI has no TypeError (a ValueError
    # carrying the type-error tag there).
    stable = binary.is_stable_abi(_ops.build_info())
    op_error = ValueError if stable else TypeError
    tag = checks.TYPE_ERROR_TAG if stable else ""
    with pytest.raises(op_error, match=f"^{tag}{which} must be an int32 tensor, got Long"):
        OUT(ids, 8, 4, *bufs.values())
    # The package's functions: TypeError either way, the message untagged.
    with pytest.raises(TypeError, match=f"^{which} must be an int32 tensor, got Long"):
        api.op_level_for(NEWEST)(ids, 8, 4, *bufs.values())


def test_type_error_tag_is_one_text() -> None:
    """The C++ library's type-error tag and the one Python looks for are the
    same text, and only a tagged ValueError becomes a TypeError."""
    header = (Path(__file__).resolve().parents[1] / "csrc" / "errors.h").read_text()
    found = re.search(r'kTypeErrorTag\[\] = "([^"]*)";', header)
    assert found and found.group(1) == checks.TYPE_ERROR_TAG
    tagged = checks.typed_error(ValueError(checks.TYPE_ERROR_TAG + "x must be an int32 tensor"))
    assert type(tagged) is TypeError and str(tagged) == "x must be an int32 tensor"
    plain = ValueError("x must be an int32 tensor")
    assert checks.typed_error(plain) is plain


def test_out_buffer_non_contiguous(device: str) -> None:
    ids = random_routes(10, 8, device=device)
    sorted_ids, expert_ids, post_pad = _buffers(10, 8, 4, device)
    wide = poisoned(2 * sorted_ids.numel(), device)[::2]
    with pytest.raises(ValueError, match="sorted_token_ids must be contiguous"):
        OUT(ids, 8, 4, wide, expert_ids, post_pad)


def test_too_small_padded_size(device: str) -> None:
    ids = random_routes(10, 8, device=device)
    with pytest.raises(ValueError, match="max_num_tokens_padded must be in"):
        torch.ops.vllm_moe_align.moe_align_block_size(ids, 8, 4, 3)


@pytest.mark.parametrize("bad", [-1, -100, 8, 1 << 40, -(1 << 40)])
def test_invalid_ids_are_ignored(device: str, bad: int) -> None:
    """Ids < 0 or >= num_experts never index anything: they are dropped."""
    ids = torch.tensor([[0, bad], [bad, 7], [3, 3]], dtype=torch.int64)
    for ignore in (False, True):
        emap = torch.arange(8, dtype=torch.int32)
        got = moe_align_block_size(ids.to(device), 4, 8, emap.to(device), False, ignore)
        want = reference(ids, 4, 8, emap, False, ignore)
        for g, w in zip(got, want):
            assert torch.equal(g.cpu(), w)
        assert int(got[2]) == 12  # experts 0, 3, 7: three blocks of 4


@pytest.mark.parametrize("arg", ["block_size", "num_experts"])
@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 10**30])
def test_sizes_beyond_int64_name_the_argument(arg: str, value: int) -> None:
    ids = torch.zeros(4, dtype=torch.int32)
    kwargs = {"block_size": 16, "num_experts": 8, arg: value}
    with pytest.raises(ValueError, match=f"{arg} must fit in a signed 64-bit integer"):
        moe_align_block_size(ids, **kwargs)


@pytest.mark.parametrize("arg,value,error", [
    ("num_experts", 8.0, TypeError), ("block_size", 16.0, TypeError),
    ("num_experts", True, TypeError), ("num_experts", 2**63, ValueError),
])
def test_op_level_wrapper_checks_sizes(arg: str, value: object, error: type) -> None:
    """vLLM's op-level wrapper order: (topk_ids, num_experts, block_size, ...)."""
    from vllm_moe_align_plugin.api import op_level_for
    from vllm_moe_align_plugin.contract import NEWEST

    ids = random_routes(10, 8)
    sizes = {"num_experts": 8, "block_size": 16, arg: value}
    with pytest.raises(error, match=arg):
        op_level_for(NEWEST)(ids, sizes["num_experts"], sizes["block_size"], *_buffers(10, 8, 16, "cpu"))


def test_docstring_names_the_accepted_dtypes() -> None:
    doc = moe_align_block_size.__doc__ or ""
    assert "int64, int32, int16, int8 or uint8" in doc and "any integer dtype" not in doc
    for dtype in (torch.uint16, torch.uint32):
        with pytest.raises(TypeError, match="topk_ids must be an integer tensor"):
            moe_align_block_size(torch.zeros(4, dtype=dtype), 16, 8)
