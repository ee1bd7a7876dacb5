"""How a message shows a value it was given: ``describe(value)``.

Every message the package builds from a caller's value goes through
``describe``, so an error about a million-element list, a large array or a
huge int stays a line long: the value's type, its shape or length, and at most
``PREVIEW_CHARS`` characters of its repr. Building the text never costs more
than a bounded repr (``reprlib``) and never raises.
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Sized
from typing import Optional

#: the most characters of a value's repr a message shows
PREVIEW_CHARS = 200
#: the most characters of a type's name a message shows
_TYPE_CHARS = 60
#: ints with more bits than this are shown by their size, not their digits
_INT_BITS_SHOWN = 600

_repr = reprlib.Repr()
_repr.maxlevel = 2
_repr.maxlist = _repr.maxtuple = _repr.maxset = _repr.maxfrozenset = _repr.maxdeque = 20
_repr.maxdict = 10
_repr.maxarray = 20
_repr.maxstring = PREVIEW_CHARS
_repr.maxlong = PREVIEW_CHARS
_repr.maxother = PREVIEW_CHARS


def type_name(value: object) -> str:
    """``list``, ``numpy.ndarray``, ``torch.Tensor``: builtins by their bare
    name, anything else with its top-level module; at most ``_TYPE_CHARS``."""
    cls = type(value)
    module = str(getattr(cls, "__module__", "")).split(".")[0]
    name = cls.__name__ if module in ("builtins", "") else f"{module}.{cls.__name__}"
    return name if len(name) <= _TYPE_CHARS else name[: _TYPE_CHARS - 3] + "..."


def _size(value: object) -> Optional[str]:
    """``shape (4, 2), dtype int64`` for anything with a tuple-like shape,
    ``length N`` for a sized value, None otherwise (or when asking fails)."""
    try:
        shape = getattr(value, "shape", None)
        if isinstance(shape, tuple):  # numpy's tuple, torch.Size
            dtype = getattr(value, "dtype", None)
            return f"shape {tuple(shape)}" + (f", dtype {dtype}" if dtype is not None else "")
        if isinstance(value, Sized):
            return f"length {len(value)}"
    except Exception:  # noqa: BLE001 - a broken __len__ / shape must not hide the error
        return None
    return None


def _huge_int(value: int) -> str:
    """An int too long to print: its digit count and magnitude."""
    digits = int(math.log10(abs(value))) + 1
    sign = "-" if value < 0 else ""
    return f"{sign}about 10**{digits - 1} ({digits} digits)"


def preview(value: object, limit: int = PREVIEW_CHARS) -> str:
    """At most about ``limit`` characters of ``value``'s repr; a cut repr ends
    with ``...``. Tensors show no elements (their type and shape say more)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > _INT_BITS_SHOWN:
        return _huge_int(int(value))
    try:
        text = _repr.repr(value)
    except Exception as exc:  # noqa: BLE001 - a broken __repr__
        text = f"<repr failed: {type(exc).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(value: object) -> str:
    """``value`` as a message shows it: ``list of length 1000000: [0, 1, ...]``,
    ``numpy.ndarray of shape (3,), dtype int64: array([0, 1, 2])``, ``float:
    16.0``; a tensor: ``torch.Tensor of shape (4, 2), dtype torch.float32 on cpu``."""
    size = _size(value)
    head = type_name(value) + (f" of {size}" if size else "")
    if _is_tensor(value):
        return f"{head} on {getattr(value, 'device', '?')}"
    return f"{head}: {preview(value)}"


def _is_tensor(value: object) -> bool:
    """A torch.Tensor, without importing torch here."""
    return any(f"{c.__module__}.{c.__qualname__}" == "torch.Tensor" for c in type(value).__mro__)
