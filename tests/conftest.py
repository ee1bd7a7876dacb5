"""Shared test helpers: devices, random routes, poisoned buffers, exact compare."""

from __future__ import annotations

from typing import Optional

import pytest
import torch

from vllm_moe_align_plugin import _ops, reference

HAS_CUDA = torch.cuda.is_available() and _ops.has_backend("cuda")
DEVICES = ["cpu"] + (["cuda"] if HAS_CUDA else [])
POISON = -777_777  # a value no output slot may keep


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test parametrized on device "cuda" gets the cuda marker."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("device") == "cuda":
            item.add_marker(pytest.mark.cuda)


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> str:
    return request.param


def random_routes(
    numel: int,
    num_experts: int,
    *,
    top_k: int = 1,
    dtype: torch.dtype = torch.int32,
    invalid_frac: float = 0.0,
    skew: bool = False,
    seed: int = 0,
    device: str = "cpu",
) -> torch.Tensor:
    """topk_ids of ``numel`` routes shaped [numel // top_k, top_k] (1-D when
    top_k does not divide numel). ``skew`` draws from a few hot experts;
    ``invalid_frac`` of the routes get ids outside [0, num_experts)."""
    g = torch.Generator().manual_seed(seed)
    if skew:
        hot = torch.randint(0, num_experts, (max(1, num_experts // 16),), generator=g)
        ids = hot[torch.randint(0, hot.numel(), (numel,), generator=g)]
    else:
        ids = torch.randint(0, num_experts, (numel,), generator=g)
    if invalid_frac > 0 and numel > 0:
        bad = torch.rand(numel, generator=g) < invalid_frac
        wrong = torch.where(
            torch.rand(numel, generator=g) < 0.5,
            -1 - torch.randint(0, 5, (numel,), generator=g),
            num_experts + torch.randint(0, 5, (numel,), generator=g),
        )
        ids = torch.where(bad, wrong, ids)
    ids = ids.to(dtype)
    if top_k > 1 and numel % top_k == 0:
        ids = ids.view(numel // top_k, top_k)
    return ids.to(device)


def random_expert_map(num_experts: int, *, seed: int = 0, device: str = "cpu") -> torch.Tensor:
    """An expert-parallel map: about half the experts local (ids 0..L-1 in a
    random order), the rest -1 (``reference.random_expert_map``, seeded)."""
    g = torch.Generator().manual_seed(seed + 1)
    return reference.random_expert_map(num_experts, generator=g).to(device)


def poisoned(size: int, device: str, shape: Optional[tuple[int, ...]] = None) -> torch.Tensor:
    return torch.full(shape or (size,), POISON, dtype=torch.int32, device=device)


def assert_same(got: tuple[torch.Tensor, ...], want: tuple[torch.Tensor, ...], what: str = "") -> None:
    """Bit-for-bit equality of every output (shape, dtype, values)."""
    names = ("sorted_token_ids", "expert_ids", "num_tokens_post_pad", "scatter_idx")
    assert len(got) == len(want), f"{what}: {len(got)} outputs, expected {len(want)}"
    for name, g, w in zip(names, got, want):
        g = g.cpu()
        w = w.cpu()
        assert g.dtype == w.dtype, f"{what} {name}: dtype {g.dtype} != {w.dtype}"
        assert g.shape == w.shape, f"{what} {name}: shape {tuple(g.shape)} != {tuple(w.shape)}"
        if not torch.equal(g, w):
            bad = (g.flatten() != w.flatten()).nonzero().flatten()[:10].tolist()
            raise AssertionError(
                f"{what} {name} differs at {bad}: got {g.flatten()[bad].tolist()}, "
                f"want {w.flatten()[bad].tolist()}"
            )
