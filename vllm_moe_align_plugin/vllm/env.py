"""The switches that turn the integration off, and the vLLM version it serves.

- ``VLLM_PLUGINS``: vLLM's own allow-list of plugin names (unset: all load;
  empty: none); this plugin's name is ``moe_align``.
- ``VLLM_MOE_ALIGN_DISABLE=1``: the plugin's own off switch, honoured by the
  runtime plugin and by statically patched vLLM trees alike.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import sys
from pathlib import Path
from typing import Optional

from ..messages import preview

PLUGIN_NAME = "moe_align"
DISABLE_ENV = "VLLM_MOE_ALIGN_DISABLE"
PLUGINS_ENV = "VLLM_PLUGINS"


def disabled_by_env() -> bool:
    return os.environ.get(DISABLE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def off_reason() -> Optional[str]:
    """Why vLLM will not use the plugin in a process started with this
    environment (None: it will, if the plugin can run)."""
    if disabled_by_env():
        return f"{DISABLE_ENV} is set"
    allow = os.environ.get(PLUGINS_ENV)
    if allow is not None and PLUGIN_NAME not in [x.strip() for x in allow.split(",")]:
        return f"{PLUGINS_ENV}={preview(allow)} does not list {PLUGIN_NAME!r}"
    return None


_VERSION_PY = re.compile(r"""^__version__\s*=\s*(?:version\s*=\s*)?['"]([^'"]+)['"]""", re.M)
_METADATA = re.compile(r"^Version:\s*(\S+)", re.M)


def vllm_version(root: Optional[Path] = None) -> Optional[tuple[str, str]]:
    """(version, where it was read) of vLLM, or None when it cannot be read.

    ``root`` None: the vLLM of this process (``vllm.version``, which vLLM
    imports first, else the installed distribution's metadata). ``root``, the
    directory holding ``vllm/``: that tree's ``vllm/_version.py``, else its one
    ``PKG-INFO`` or ``vllm-*.dist-info/METADATA``.
    """
    if root is None:
        version = getattr(sys.modules.get("vllm.version"), "__version__", None)
        if isinstance(version, str) and version and version != "dev":
            return version, "vllm.version"
        try:
            return importlib.metadata.version("vllm"), "installed metadata"
        except importlib.metadata.PackageNotFoundError:
            return None
    version_py = root / "vllm" / "_version.py"
    if version_py.is_file():
        m = _VERSION_PY.search(version_py.read_text(encoding="utf-8", errors="replace"))
        if m:
            return m.group(1), str(version_py)
    found = []
    for meta in [root / "PKG-INFO"] + sorted(root.glob("vllm-*.dist-info/METADATA")):
        if meta.is_file():
            m = _METADATA.search(meta.read_text(encoding="utf-8", errors="replace"))
            if m:
                found.append((m.group(1), str(meta)))
    return found[0] if len(found) == 1 else None


def running_vllm_version() -> Optional[str]:
    """The version of the vLLM in this process, or None without vLLM."""
    found = vllm_version()
    return found[0] if found else None
