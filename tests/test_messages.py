"""Error messages built from a caller's value stay short: the value's type,
its shape or length, and at most about 200 characters of it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vllm_moe_align_plugin import moe_align_block_size
from vllm_moe_align_plugin.api import op_level_for
from vllm_moe_align_plugin.bench import markdown_table
from vllm_moe_align_plugin.contract import NEWEST
from vllm_moe_align_plugin.messages import PREVIEW_CHARS, describe, preview
from vllm_moe_align_plugin.vllm import runtime
from vllm_moe_align_plugin.vllm.env import off_reason

LIMIT = 400
IDS = torch.zeros(4, dtype=torch.int32)


def message(call: object, *args: object) -> str:
    """The message of the TypeError or ValueError ``call(*args)`` raises."""
    with pytest.raises((TypeError, ValueError)) as info:
        call(*args)  # type: ignore[operator]
    return str(info.value)


@pytest.mark.parametrize("args,words", [
    ((list(range(10**6)), 16, 8), ("topk_ids", "list of length 1000000")),
    ((np.arange(10**6), 16, 8), ("topk_ids", "numpy.ndarray of shape (1000000,)")),
    (("x" * 10**6, 16, 8), ("topk_ids", "str of length 1000000")),
    ((IDS, 10**5000, 8), ("block_size", "int", "5001 digits")),
    ((IDS, 16, -(10**400)), ("num_experts", "int", "401 digits")),
    ((IDS, "7" * 10**5, 8), ("block_size", "str of length 100000")),
    ((IDS, 16, 8, np.arange(5000)), ("expert_map", "numpy.ndarray of shape (5000,)")),
    ((IDS, torch.zeros(1000, 1000), 8), ("block_size", "torch.Tensor of shape (1000, 1000)")),
    ((torch.zeros(1000, 1000), 16, 8), ("topk_ids", "integer tensor", "Float")),
    ((IDS, 16, 8, torch.arange(8.0)), ("expert_map", "int32 tensor", "Float")),
])
def test_messages_are_short_and_name_argument_and_type(args: tuple, words: tuple) -> None:
    text = message(moe_align_block_size, *args)
    assert len(text) < LIMIT, (len(text), text[:LIMIT])
    for word in words:
        assert word in text, text


def test_op_level_wrapper_message_is_short() -> None:
    bufs = [torch.empty(200, dtype=torch.int32) for _ in range(3)]
    text = message(op_level_for(NEWEST), IDS, list(range(10**6)), 16, *bufs)
    assert len(text) < LIMIT and "num_experts must be an int, got list of length 1000000" in text


def test_preview_is_bounded_for_any_value() -> None:
    class Loud:
        def __repr__(self) -> str:
            return "y" * 10**6

    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    for value in (Loud(), Broken(), {i: i for i in range(10**5)}, [[list(range(1000))] * 1000],
                  b"z" * 10**6, 10**10000, -(10**10000)):
        assert len(preview(value)) <= PREVIEW_CHARS, type(value)
        assert len(describe(value)) <= PREVIEW_CHARS + 60, type(value)
    assert describe(True) == "bool: True" and describe(16.0) == "float: 16.0"
    assert describe([1, 2]) == "list of length 2: [1, 2]"


def test_other_messages_with_a_callers_value(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError) as info:
        markdown_table(["a", "b"], [list(range(10**5))])
    assert len(str(info.value)) < LIMIT and "list of length 100000" in str(info.value)
    monkeypatch.setenv("VLLM_PLUGINS", "other," * 10**5)
    monkeypatch.delenv("VLLM_MOE_ALIGN_DISABLE", raising=False)
    reason = off_reason() or ""
    assert len(reason) < LIMIT and "does not list 'moe_align'" in reason


@pytest.mark.parametrize("loaded,words", [
    (0, "no vLLM module that uses it is loaded yet"),
    (1, "replaced in the 1 vLLM module loaded so far"),
    (3, "replaced in the 3 vLLM modules loaded so far"),
])
def test_enabled_line_says_where_the_function_was_replaced(loaded: int, words: str) -> None:
    text = runtime._where_replaced(loaded)
    assert text.startswith(words), text
    assert text.endswith("modules loaded later get the plugin's function when they import it")


def test_enabled_line_has_no_jargon() -> None:
    line = runtime._enabled_line(runtime._State(contract=NEWEST, vllm_version="0.33.0"))
    assert "already imported" not in line and "the rest as they are" not in line
    assert "loaded so far; modules loaded later get the plugin's function" in line or \
        "is loaded yet; modules loaded later" in line, line
