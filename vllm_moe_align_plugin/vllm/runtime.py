"""Makes every vLLM caller of ``moe_align_block_size`` use the plugin.

``register()`` is vLLM's ``vllm.general_plugins`` entry point: vLLM calls it
once per process (API server, engine core, every worker) before the model is
loaded. It:

- picks the contract of the installed vLLM (``contract.contract_for_vllm``);
  an unknown vLLM, or a compiled op that fails to load, leaves vLLM untouched
  with one warning;
- replaces ``moe_align_block_size`` in the module that defines it and in every
  loaded ``vllm.*`` module that bound it with ``from ... import``, and
  ``vllm._custom_ops.moe_align_block_size`` (the op-level wrapper); in vLLM
  >= 0.33 likewise ``fused_globalize_align_block_size`` (DeepEP v2 decode)
  and its op-level wrapper (``TARGETS``); each
  replacement keeps the function it replaces as its fallback, so a call on a
  device the plugin cannot serve runs vLLM's own function
  (``vllm_moe_align_plugin.devices``);
- for the target modules, if not imported yet, patches them the moment they are
  imported (a ``sys.meta_path`` hook), so modules imported later bind the
  plugin's function: register() imports nothing of vLLM's model code and never
  initialises CUDA.

It is idempotent, prints one line, and is undone by ``unregister()``. Turn it
off with ``VLLM_PLUGINS`` (vLLM's allow-list; this plugin's name is
``moe_align``) or with ``VLLM_MOE_ALIGN_DISABLE=1``.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import sys
import threading
import types
from dataclasses import dataclass, field
from typing import Any, Optional

from ..contract import (
    GLOBALIZE_OP,
    GLOBALIZE_PYTHON,
    OP,
    PYTHON,
    Contract,
    contract_for_vllm,
    has_globalize,
)
from ..log import announce, logger
from .env import DISABLE_ENV, disabled_by_env, running_vllm_version

NAME = "moe_align_block_size"
DEFINING_MODULE = "vllm.model_executor.layers.fused_moe.moe_align_block_size"
OPS_MODULE = "vllm._custom_ops"
#: vLLM >= 0.33's fused globalize + align (DeepEP v2 decode): function and module
GLOBALIZE_NAME = "fused_globalize_align_block_size"
GLOBALIZE_MODULE = "vllm.model_executor.layers.fused_moe.fused_globalize_align_block_size"


@dataclass(frozen=True)
class Target:
    """A function the plugin replaces: ``module.name``, built by ``kind``
    (``build_replacement``); ``required``: every vLLM line the plugin knows has it."""

    module: str
    name: str
    kind: str
    required: bool


TARGETS = (
    Target(DEFINING_MODULE, NAME, PYTHON, True),
    Target(OPS_MODULE, NAME, OP, True),
    Target(GLOBALIZE_MODULE, GLOBALIZE_NAME, GLOBALIZE_PYTHON, False),
    Target(OPS_MODULE, GLOBALIZE_NAME, GLOBALIZE_OP, False),
)
TARGET_MODULES = frozenset(t.module for t in TARGETS)
NAMES = tuple(dict.fromkeys(t.name for t in TARGETS))


@dataclass
class _State:
    contract: Contract
    vllm_version: str
    # (module name, attribute, original value) of every replacement made
    patched: list[tuple[str, str, Any]] = field(default_factory=list)
    # (target module, name) -> (vLLM's function, the plugin's replacement
    # with it as fallback)
    swaps: dict[tuple[str, str], tuple[Any, Any]] = field(default_factory=dict)
    finder: Optional[importlib.abc.MetaPathFinder] = None


_lock = threading.RLock()
_state: Optional[_State] = None


def is_registered() -> bool:
    return _state is not None


def active_contract() -> Optional[Contract]:
    """The contract in force in this process, or None when not registered."""
    return _state.contract if _state is not None else None


def patched_modules(name: str = NAME) -> list[str]:
    """Names of the modules whose ``name`` (a function the plugin replaces)
    is the plugin's."""
    with _lock:
        return [mod for mod, attr, _ in _state.patched if attr == name] if _state else []


def register() -> None:
    """vLLM's plugin entry point. Never raises: on any problem vLLM keeps its
    own ``moe_align_block_size`` and one warning says why."""
    try:
        _register()
    except Exception as exc:  # a broken plugin must never break vLLM
        logger.warning(
            "vllm-moe-align-plugin not enabled (%s: %s); vLLM keeps its own "
            "moe_align_block_size", type(exc).__name__, exc,
        )
        try:
            unregister()
        except Exception:  # pragma: no cover - best effort
            pass


def _register() -> None:
    global _state
    with _lock:
        if _state is not None:
            return
        if disabled_by_env():
            announce(logging.INFO, "vllm-moe-align-plugin disabled by %s", DISABLE_ENV)
            return
        version = running_vllm_version()
        if version is None:
            logger.warning("vllm-moe-align-plugin: vLLM is not installed; nothing to patch")
            return
        contract = contract_for_vllm(version)
        if contract is None:
            logger.warning(
                "vllm-moe-align-plugin does not know vLLM %s; vLLM keeps its own "
                "moe_align_block_size", version,
            )
            return
        from .._ops import library

        library.require()
        state = _State(contract=contract, vllm_version=version)
        _state = state
        for mod_name in sorted(TARGET_MODULES):
            module = sys.modules.get(mod_name)
            if module is not None:
                _patch_target(state, module)
        _sweep_bound_copies(state)
        state.finder = _PatchOnImport()
        sys.meta_path.insert(0, state.finder)
        announce(logging.INFO, "%s", _enabled_line(state))


def _enabled_line(state: _State) -> str:
    from .. import __version__
    from .._ops import cuda_host, library

    backends = ["CPU"]
    if library.has_backend("cuda"):
        pdl = "; programmatic dependent launch on" if cuda_host.dependent_launch() else ""
        backends.append(f"CUDA ({', '.join(cuda_host.cuda_archs())}{pdl})")
    return (
        f"vllm-moe-align-plugin {__version__} on for vLLM {state.vllm_version} "
        f"({state.contract.name} contract): {DEFINING_MODULE}.{NAME} and "
        f"{OPS_MODULE}.{NAME} run the plugin's op, wherever vLLM imports them "
        f"({_where_replaced(len(patched_modules()))}); "
        + (f"so do {GLOBALIZE_NAME} and its op-level wrapper (DeepEP v2 decode); "
           if has_globalize(state.vllm_version) else "")
        + f"kernels: {', '.join(backends)}; other devices keep vLLM's function"
    )


def _where_replaced(loaded: int) -> str:
    """The part of the enabled line that says where the function was swapped
    now and what happens to vLLM modules imported afterwards."""
    later = "modules loaded later get the plugin's function when they import it"
    if loaded == 0:
        return f"no vLLM module that uses it is loaded yet; {later}"
    modules = "module" if loaded == 1 else "modules"
    return f"replaced in the {loaded} vLLM {modules} loaded so far; {later}"


def unregister() -> None:
    """Restores every replaced attribute and removes the import hook."""
    global _state
    with _lock:
        state, _state = _state, None
        if state is None:
            return
        if state.finder is not None and state.finder in sys.meta_path:
            sys.meta_path.remove(state.finder)
        for mod_name, attr, original in reversed(state.patched):
            module = sys.modules.get(mod_name)
            if module is not None:
                setattr(module, attr, original)
        # Modules imported while registered bound the plugin's functions
        # themselves (from the patched module): give them the originals too.
        restore = {(key[1], id(ours)): original for key, (original, ours) in state.swaps.items()}
        for _, module in _vllm_modules():
            for name in NAMES:
                original = restore.get((name, id(getattr(module, name, None))))
                if original is not None:
                    setattr(module, name, original)


def _vllm_modules() -> list[tuple[str, types.ModuleType]]:
    return [(name, module) for name, module in list(sys.modules.items())
            if module is not None and (name == "vllm" or name.startswith("vllm."))]


def _patch_attr(state: _State, module: types.ModuleType, name: str, value: Any) -> None:
    original = getattr(module, name)
    if original is value:
        return
    setattr(module, name, value)
    state.patched.append((module.__name__, name, original))


def build_replacement(kind: str, contract: Contract, original: Any) -> Any:
    """The plugin's function of ``kind`` (``contract``'s PYTHON, OP,
    GLOBALIZE_PYTHON or GLOBALIZE_OP) for ``contract``'s line, with vLLM's
    ``original`` as its fallback. The runtime plugin and the static patch's
    hook both build their replacements here."""
    if kind in (PYTHON, OP):
        from ..api import drop_in_for, op_level_for

        build = drop_in_for if kind == PYTHON else op_level_for
        return build(contract, fallback=original)
    from .. import globalize

    return (globalize.drop_in_for if kind == GLOBALIZE_PYTHON else globalize.op_level_for)(original)


def _patch_target(state: _State, module: types.ModuleType) -> None:
    """Patches the functions a target module (TARGETS) owns."""
    for target in TARGETS:
        if target.module != module.__name__:
            continue
        if not hasattr(module, target.name):
            if target.required:
                logger.warning("vllm-moe-align-plugin: %s has no %s", module.__name__, target.name)
            continue
        key = (target.module, target.name)
        if key not in state.swaps:
            original = getattr(module, target.name)
            state.swaps[key] = (original, build_replacement(target.kind, state.contract, original))
        _patch_attr(state, module, target.name, state.swaps[key][1])


def _sweep_bound_copies(state: _State) -> None:
    """Replaces an original function wherever a loaded vllm module bound it
    with ``from ... import`` (``fused_humming_moe`` binds the globalize one)."""
    ours_for = {(key[1], id(original)): ours for key, (original, ours) in state.swaps.items()}
    for mod_name, module in _vllm_modules():
        if mod_name in TARGET_MODULES:
            continue
        for name in NAMES:
            ours = ours_for.get((name, id(getattr(module, name, None))))
            if ours is not None:
                _patch_attr(state, module, name, ours)


class _PatchingLoader(importlib.abc.Loader):
    """Runs the real loader, then patches the freshly executed module."""

    def __init__(self, inner: importlib.abc.Loader) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:  # get_source, is_package, ...
        return getattr(self._inner, name)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Optional[types.ModuleType]:
        return self._inner.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        self._inner.exec_module(module)  # type: ignore[attr-defined]
        with _lock:
            if _state is not None:
                try:
                    _patch_target(_state, module)
                except Exception as exc:  # never break vLLM's import
                    logger.warning("vllm-moe-align-plugin: could not patch %s (%s)",
                                   module.__name__, exc)


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Finds the target modules with the other finders and wraps their
    loader, so the plugin's functions are in place before anyone imports them."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname not in TARGET_MODULES:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _PatchingLoader(spec.loader)
                return spec
        return None
