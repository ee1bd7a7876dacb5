"""The Python side of the ops' argument checks (csrc/checks.h holds the rest).

``check_int`` is the one way an integer argument reaches an op;
``typed_error`` gives a dtype error from an op its Python type;
``check_devices`` is the C++ device check, for the fake kernels.
"""

from __future__ import annotations

import operator
from typing import Optional

import torch

from ..messages import describe

#: How a library on PyTorch's stable ABI marks a type error: it can raise
#: ValueError but not TypeError, so its type errors are ValueErrors whose
#: message starts with this tag (csrc/errors.h, kTypeErrorTag: the same text).
TYPE_ERROR_TAG = "TypeError: "


def typed_error(exc: ValueError) -> Exception:
    """The error the package's functions raise for ``exc``, a ValueError from
    an op: a TypeError, without the tag, for a tagged one (a type error of the
    stable-ABI library; the C++-ABI library raises TypeError itself). Any
    other error is returned as it is."""
    head, tag, rest = str(exc).partition(TYPE_ERROR_TAG)
    if not tag:
        return exc
    error = TypeError(head + rest)
    error.__cause__ = exc
    return error


def check_devices(ids: torch.Tensor, ids_name: str = "topk_ids", **tensors: Optional[torch.Tensor]) -> None:
    """The C++ ops' device check (csrc/checks.h), in the same words: every
    tensor argument is on the device of the op's ids (``ids_name``). The fake
    kernels run it because a meta tensor among real ones sends the call to
    them, not to a backend."""
    for name, t in tensors.items():
        if t is not None and t.device != ids.device:
            raise ValueError(
                f"{name} must be on the same device as {ids_name} ({ids.device}), got {t.device}"
            )


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def check_int(name: str, value: object) -> int:
    """``value`` as a Python int: an integer (anything with ``__index__`` but a
    bool) that fits the ops' 64-bit ints; else TypeError / ValueError naming
    ``name``. Every integer argument the package passes to an op goes through it."""
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be an int, got {describe(value)}") from None
    if not _INT64_MIN <= number <= _INT64_MAX:
        raise ValueError(f"{name} must fit in a signed 64-bit integer, got {describe(number)}")
    return number
