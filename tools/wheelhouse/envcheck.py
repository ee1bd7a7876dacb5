"""What a run on the GPU machine sees, checked in one process before it starts.

    python -m tools.wheelhouse.envcheck [--site DIR] [--package NAME ...] [--plugin]

Prints the Python and torch versions and the visible GPUs, the versions of the
named packages, the requirements of the wheelhouse's packages (``--site``) that
the environment does not meet, and with ``--plugin`` whether the plugin's
compiled op loads (with its CUDA kernel where a GPU is visible) and whether
vLLM's plugin entry point finds it. Exit status 1 when the plugin check fails.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import sys
from pathlib import Path
from typing import Any, Optional

DEFAULT_PACKAGES = ("vllm", "triton", "transformers", "numpy", "pydantic", "typing_extensions",
                    "anyio", "huggingface_hub", "tokenizers", "numba", "setuptools")
PLUGIN_GROUP, PLUGIN_NAME = "vllm.general_plugins", "moe_align"


def _requirement_class() -> Any:
    try:
        from packaging.requirements import Requirement
    except ImportError:
        try:
            from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef]
        except ImportError:
            return None
    return Requirement


def unmet_requirements(site: Path) -> Optional[list[str]]:
    """``"<dist> needs <requirement>, found <version>"`` for every requirement
    (marker true, no extra) of a distribution installed in ``site`` that the
    version importable now does not satisfy. A requirement that is not
    installed at all is not listed (left out on purpose, or optional). None
    when ``packaging`` is not available."""
    requirement_cls = _requirement_class()
    if requirement_cls is None:
        return None
    bad = set()
    for dist in md.distributions(path=[str(site)]):
        for line in dist.requires or []:
            req = requirement_cls(line)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            try:
                have = md.version(req.name)
            except md.PackageNotFoundError:
                continue
            if req.specifier and not req.specifier.contains(have, prereleases=True):
                bad.add(f"{dist.metadata['Name']} needs {line}, found {have}")
    return sorted(bad)


def plugin_problems() -> list[str]:
    """Why the plugin would not work in this process ([] when it would)."""
    import torch

    import vllm_moe_align_plugin
    import vllm_moe_align_plugin._ops as ops

    print("plugin imported from:", Path(vllm_moe_align_plugin.__file__).parent)
    print("plugin op loaded:", ops.available(), "| cuda kernel:", ops.has_backend("cuda"),
          ops.LOAD_ERROR or "")
    eps = [f"{e.name} -> {e.value}" for e in md.entry_points(group=PLUGIN_GROUP)]
    print(f"{PLUGIN_GROUP}:", eps)
    problems = []
    if not ops.available():
        problems.append(f"the plugin's compiled op does not load: {ops.LOAD_ERROR}")
    if not any(e.startswith(PLUGIN_NAME + " ") for e in eps):
        problems.append(f"no {PLUGIN_GROUP} entry point named {PLUGIN_NAME}")
    if torch.cuda.is_available() and not ops.has_backend("cuda"):
        problems.append("a GPU is visible but the plugin was built without its CUDA kernel (nvcc missing?)")
    return problems


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.wheelhouse.envcheck",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--site", type=Path, help="an unpacked tree-mode wheelhouse")
    ap.add_argument("--package", action="append", default=None, help="print its version (repeatable)")
    ap.add_argument("--plugin", action="store_true", help="check the plugin's op and entry point")
    args = ap.parse_args(argv)
    import torch

    print("python", sys.version.split()[0], "| torch", torch.__version__, "| GPUs",
          [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])
    for name in args.package or DEFAULT_PACKAGES:
        try:
            print(f"  {name} {md.version(name)}")
        except md.PackageNotFoundError:
            print(f"  {name} MISSING")
    if args.site is not None:
        bad = unmet_requirements(args.site)
        print("unmet version requirements:",
              "(packaging not importable)" if bad is None else "; ".join(bad) or "none")
    problems = plugin_problems() if args.plugin else []
    for problem in problems:
        print("PROBLEM:", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
