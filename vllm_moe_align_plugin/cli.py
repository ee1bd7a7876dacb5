"""vllm-moe-align: check, verify and time the plugin; patch a vLLM tree.

  info     versions, the compiled op and its kernels, per device whether vLLM
           calls would run the plugin or vLLM's own function, and whether
           vLLM will load the plugin (off switches included)
  verify   random cases against the pure-torch reference on every device
  bench    the plugin against the reference (and vLLM's / SGLang's compiled
           ops when present) on one device
  patch    check | apply | revert | diff the static vLLM patch: vLLM's own
           source binds the plugin's function, for setups without plugins
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import os
import random
import sys
from typing import Optional
from urllib.parse import unquote, urlparse

import torch

from . import __version__, binary, devices
from ._ops import build_record, cuda_host, library
from .contract import ALL, NEWEST, contract_for_vllm
from .log import logger
from .messages import preview
from .vllm.env import DISABLE_ENV, PLUGIN_NAME, off_reason, running_vllm_version
from .vllm.runtime import (
    DEFINING_MODULE,
    GLOBALIZE_MODULE,
    GLOBALIZE_NAME,
    NAME,
    OPS_MODULE,
    has_globalize,
)

DISTRIBUTION = "vllm-moe-align-plugin"


def _devices() -> list[str]:
    devices = ["cpu"] if library.has_backend("cpu") else []
    if torch.cuda.is_available() and library.has_backend("cuda"):
        devices.append("cuda")
    return devices


def _visible_devices() -> list[torch.device]:
    out = [torch.device("cpu")]
    if torch.cuda.is_available():
        out += [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
    return out


def _device_line(device: torch.device) -> str:
    ok, why = devices.decision(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "host"
    return f"{str(device) + ' (' + name + ')':32s} {'plugin' if ok else f'vLLM function ({why})'}"


def _file_url_path(url: str) -> Optional[str]:
    parsed = urlparse(url)
    return os.path.realpath(unquote(parsed.path)) if parsed.scheme == "file" else None


def binary_origin(path: Optional[str] = None,
                  dist: Optional[importlib.metadata.Distribution] = None) -> str:
    """Where the library at ``path`` (default: ``binary_path()``) comes from:
    an installed wheel, an editable install built in place in a source tree,
    or an in-place build that is not the installed package. Read from the
    installed distribution's file list and its direct_url.json (PEP 610)."""
    path = library.binary_path() if path is None else path
    if path is None:
        return "not built"
    if dist is None:
        try:
            dist = importlib.metadata.distribution(DISTRIBUTION)
        except importlib.metadata.PackageNotFoundError:
            dist = None
    real = os.path.realpath(path)
    if dist is None:
        return "in-place build in a source tree (no installed vllm-moe-align-plugin)"
    try:
        direct = json.loads(dist.read_text("direct_url.json") or "null")
    except ValueError:
        direct = None
    direct = direct if isinstance(direct, dict) else {}
    url = direct.get("url", "")
    installed = {os.path.realpath(str(dist.locate_file(f))) for f in (dist.files or [])
                 if f.name.startswith("_C")}
    if real in installed:
        if "archive_info" in direct:
            return f"installed wheel {dist.version} ({url})"
        if "dir_info" in direct:
            return f"installed {dist.version}, built from the source tree {_file_url_path(url) or url}"
        if "vcs_info" in direct:
            return f"installed {dist.version}, built from {url}"
        return f"installed wheel {dist.version} (from a package index)"
    source = _file_url_path(url) if direct.get("dir_info", {}).get("editable") else None
    if source and real.startswith(source.rstrip(os.sep) + os.sep):
        return f"editable install {dist.version}, built in place in {source}"
    return (f"in-place build in a source tree, not the installed vllm-moe-align-plugin "
            f"{dist.version} ({dist.locate_file('')})")


def describe_binary(with_file: bool = True) -> list[str]:
    """Lines for ``vllm-moe-align info`` under "compiled op": the library's
    file (``with_file``), where it comes from, and what it was built for."""
    path = library.binary_path()
    if path is None:
        return [f"  {'file':20s}none: not built (pip install --no-build-isolation .)"]
    info = build_record.build_info()
    lines = [f"  {'file':20s}{path}"] if with_file else []
    lines.append(f"  {'from':20s}{binary_origin(path)}")
    if info is None:
        lines.append(f"  {'built for':20s}unknown (a build without build info: rebuild it)")
        return lines
    if binary.is_stable_abi(info):
        torches = (f"torch >= {info.get('torch_floor')} (stable ABI, Python 3 abi3; built with "
                   f"{info.get('torch')}; installed: {torch.__version__})")
    else:
        same = "the installed one" if info.get("torch") == torch.__version__ else \
            f"installed: {torch.__version__}"
        torches = f"torch {info.get('torch')} only (its C++ ABI; {same})"
    command = info.get("command", "?")
    kind = "a wheel build" if info.get("wheel") else "built by " + {
        "editable_wheel": "pip install -e", "bdist_wheel": "pip install / a wheel build",
        "build_ext --inplace": "setup.py build_ext --inplace"}.get(command, command)
    cuda = (f"CUDA kernels ({' '.join(info.get('cuda_archs') or []) or '?'}) by nvcc "
            f"{info.get('nvcc')}" if info.get("cuda")
            else f"CPU kernel only ({info.get('no_cuda_reason') or 'no CUDA kernels'})")
    lines.append(f"  {'built for':20s}{torches}; {cuda}; {kind}")
    if library.CUDA_LIBRARY is not None:
        state = "loaded" if library.CUDA_LOAD_ERROR is None else f"NOT LOADED: {library.CUDA_LOAD_ERROR}"
        lines.append(f"  {'cuda library':20s}{library.CUDA_LIBRARY} ({state})")
    return lines


def cmd_info(_: argparse.Namespace) -> int:
    found = running_vllm_version()
    vllm_version = found
    eps = importlib.metadata.entry_points(group="vllm.general_plugins")
    discovered = any(ep.name == PLUGIN_NAME for ep in eps)
    contract = contract_for_vllm(vllm_version) if vllm_version else None
    print(f"vllm-moe-align-plugin {__version__}")
    print(f"torch                 {torch.__version__} (CUDA {torch.version.cuda}"
          + (f", HIP {torch.version.hip})" if torch.version.hip else ")"))
    print(f"vLLM                  {vllm_version or 'not installed'}")
    if not library.available():
        print(f"compiled op           FAILED TO LOAD: {library.LOAD_ERROR}")
        print("\n".join(describe_binary()))
        print("enabled               no (vLLM keeps its own function)")
        return 1
    print(f"compiled op           {library.binary_path() or '?'}")
    print("\n".join(describe_binary(with_file=False)))
    backends = [d for d in ("cpu", "cuda") if library.has_backend(d)]
    print(f"kernels               {', '.join(backends)}"
          + (f" (CUDA archs: {' '.join(cuda_host.cuda_archs()) or 'unknown'})" if "cuda" in backends
             else " (no CUDA kernels: CUDA calls run vLLM's function)")
          + ("; programmatic dependent launch on" if "cuda" in backends
             and cuda_host.dependent_launch() else ""))
    ops = [f"{op.split('::')[1]} ({', '.join(d for d in ('cpu', 'cuda') if library.has_backend(d, op))})"
           for op in library.TENSOR_OPS]
    print(f"ops                   {'; '.join(ops)}")
    if not torch.cuda.is_available() and torch.version.cuda:
        print("GPU                   none visible")
    print("per device:")
    quiet = logger.level
    logger.setLevel(logging.ERROR)  # the warning would repeat what the line says
    try:
        for device in _visible_devices():
            print(f"  {_device_line(device)}")
    finally:
        logger.setLevel(quiet)
    if vllm_version is None:
        print(f"contract              {NEWEST.name} (standalone: the newest)")
        print("enabled               no (vLLM is not installed; the function works standalone)")
        return 0
    print(f"entry point           vllm.general_plugins:{PLUGIN_NAME} "
          f"({'found' if discovered else 'NOT FOUND: reinstall the package'})")
    why_off = off_reason()
    if contract is None:
        why_off = f"vLLM {vllm_version} is not a version this plugin knows"
    elif not discovered:
        why_off = "vLLM cannot find the plugin's entry point"
    if why_off is None:
        print(f"contract              {contract.name}")
        also = (f", and {GLOBALIZE_MODULE}.{GLOBALIZE_NAME} and {OPS_MODULE}.{GLOBALIZE_NAME}"
                if has_globalize(vllm_version) else "")
        print(f"enabled               yes: vLLM processes will replace {DEFINING_MODULE}.{NAME} "
              f"and {OPS_MODULE}.{NAME}{also} (and every module that imported them)")
    else:
        print(f"enabled               no ({why_off}); vLLM keeps its own function")
        print(f"                      (off switches: {DISABLE_ENV}=1, or VLLM_PLUGINS "
              f"without {PLUGIN_NAME!r})")
    return 0


def _random_case(rng: random.Random) -> dict:
    numel = rng.choice([0, 1, rng.randint(2, 64), rng.randint(65, 5000), rng.randint(5001, 80000)])
    return dict(
        numel=numel,
        num_experts=rng.choice([1, 8, 64, 128, 256, 257, 512, rng.randint(1, 1024)]),
        block_size=rng.choice([1, 16, 32, 64, 128, 256, rng.randint(1, 256)]),
        map_mode=rng.choice(["none", "after", "while_counting"]),
        pad=rng.random() < 0.3,
        invalid=rng.choice([0.0, 0.0, 0.2]),
        contract=rng.choice(ALL),
        dtype=rng.choice([torch.int32, torch.int64]),
    )


def cmd_verify(args: argparse.Namespace) -> int:
    from .api import drop_in_for
    from .reference import moe_align_block_size_reference, random_expert_map

    library.require()
    rng = random.Random(args.seed)
    devices = _devices()
    passed = {d: 0 for d in devices}
    failed: list[str] = []
    for k in range(args.cases):
        c = _random_case(rng)
        g = torch.Generator().manual_seed(args.seed * 100003 + k)
        E, B, n = c["num_experts"], c["block_size"], c["numel"]
        ids = torch.randint(-1 if c["invalid"] else 0, E + (1 if c["invalid"] else 0), (n,),
                            generator=g).to(c["dtype"])
        emap = None if c["map_mode"] == "none" else random_expert_map(E, generator=g)
        contract = c["contract"]
        ignore = c["map_mode"] == "while_counting" and contract.has_ignore_invalid_experts
        want = moe_align_block_size_reference(ids, B, E, emap, c["pad"], ignore, contract=contract)
        fn = drop_in_for(contract)
        for dev in devices:
            extra = (ignore,) if contract.has_ignore_invalid_experts else ()
            got = fn(ids.to(dev), B, E, None if emap is None else emap.to(dev), c["pad"], *extra)
            if all(torch.equal(x.cpu(), y) for x, y in zip(got, want)):
                passed[dev] += 1
            else:
                failed.append(f"{dev} case {k}: {c}")
    for dev in devices:
        print(f"verify {dev:4s}: {passed[dev]}/{args.cases} random cases equal the reference")
    for line in failed[:10]:
        print("FAILED", line)
    return 1 if failed else 0


def cmd_bench(args: argparse.Namespace) -> int:
    from . import bench

    library.require()
    device = args.device or ("cuda" if "cuda" in _devices() else "cpu")
    if device not in _devices():
        why = "no CUDA device is visible" if not torch.cuda.is_available() else \
            "this build of the plugin has no CUDA kernels"
        print(f"vllm-moe-align bench: --device {device}: {why}", file=sys.stderr)
        return 2
    cases = bench.QUICK_CASES if args.quick else bench.CASES
    impls = bench.available_impls(device)
    eager_calls = 200 if args.quick else 2000
    if device == "cpu":
        eager_calls = 20 if args.quick else 100
    rows = bench.run(cases, device, impls, eager_calls=eager_calls)
    gpu = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(f"moe_align_block_size on {gpu} (outputs validated against the reference first)")
    print(bench.timing_note(device, eager_calls, impls))
    print(bench.format_table(rows, device))
    return 0


def cmd_patch(args: argparse.Namespace) -> int:
    """check: 0 when the tree is pristine or patched, 1 otherwise; apply: 0
    when done or already applied; revert: 0 when done; diff: 0 with the diff
    on stdout (the rest on stderr); 1 (files untouched) when refused."""
    from .vllm import source_patch

    try:
        target = source_patch.load_target(args.path, args.vllm_version)
        about = sys.stderr if args.action == "diff" else sys.stdout
        print(f"vLLM {target.version} at {target.root} (version from {target.version_source})",
              file=about)
        print(f"patch   the {target.contract.name} contract's static patch "
              "(`vllm-moe-align patch diff` prints it)", file=about)
        if args.action == "diff":
            sys.stdout.write(source_patch.unified_diff(target))
            return 0
        if args.action == "check":
            for f in target.files:
                print(f"  {f.rel}: {f.status} ({f.detail})")
            status = target.status()
            hint = {source_patch.PRISTINE: "`vllm-moe-align patch apply` patches it",
                    source_patch.PATCHED: "`vllm-moe-align patch revert` restores it"}
            print(f"state: {status} ({hint.get(status, 'apply and revert refuse this tree')})")
            return 0 if status in hint else 1
        if args.action == "apply" and target.status() == source_patch.PATCHED:
            print("already applied: nothing to do")
            return 0
        done = source_patch.apply(target) if args.action == "apply" else source_patch.revert(target)
        for path in done:
            print(f"  {'patched' if args.action == 'apply' else 'reverted'} {path}")
        return 0
    except source_patch.PatchError as exc:
        print(f"vllm-moe-align patch {args.action}: refused: {exc}", file=sys.stderr)
        return 1


def _at_least_one(text: str) -> int:
    """argparse type of ``--cases``: an integer >= 1, else an error saying so."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"needs an integer >= 1, got {preview(text)}")
    return value


#: (name, one-line help, --help description) of each subcommand
COMMANDS = {
    "info": ("versions, kernels, per-device routing, whether vLLM loads it",
             "Print the versions of the plugin, torch and vLLM, the compiled op and its "
             "kernels, per visible device whether vLLM's calls run the plugin or vLLM's own "
             "function (and why), and whether vLLM processes will load the plugin "
             "(off switches included). Exit code 1 when the compiled op does not load."),
    "verify": ("random cases against the reference on every device",
               "Run random cases (sizes, expert maps, every vLLM line's contract) through the "
               "plugin on every device it has kernels for, and compare each result with the "
               "pure-torch reference, element for element. Exit code 1 on any difference."),
    "bench": ("time the plugin against the reference and vLLM's op",
              "Time the plugin, the pure-torch reference and, when installed, vLLM's and "
              "SGLang's compiled ops on one device, after validating each one's outputs; "
              "prints a markdown table and how many calls each cell timed."),
    "patch": ("check, apply, revert or print the static vLLM patch",
              "Patch vLLM's source once instead of loading the runtime plugin: each function "
              "the plugin replaces gets one guarded block in its vLLM file, which binds the "
              "plugin's function when this "
              "package is importable and does nothing otherwise. `diff` prints the change as "
              "a unified diff (for `patch -p1` or `git apply` in the directory holding vllm/)."),
}


def _subparser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    """The subcommand ``name`` with its help line and its --help description."""
    short, long = COMMANDS[name]
    return sub.add_parser(name, help=short, description=long)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="vllm-moe-align", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{info,verify,bench,patch}")
    _subparser(sub, "info").set_defaults(fn=cmd_info)
    p = _subparser(sub, "verify")
    p.add_argument("--cases", type=_at_least_one, default=300,
                   help="number of random cases (an integer >= 1; default 300)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random cases (default 0)")
    p.set_defaults(fn=cmd_verify)
    p = _subparser(sub, "bench")
    p.add_argument("--quick", action="store_true", help="a few shapes, fewer calls")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None,
                   help="where to time (default: cuda when available, else cpu)")
    p.set_defaults(fn=cmd_bench)
    p = _subparser(sub, "patch")
    p.add_argument("action", choices=["check", "apply", "revert", "diff"],
                   help="check: state of each file; apply: add the plugin's block (no-op when "
                        "already applied); revert: remove it byte for byte; diff: print the "
                        "change as a unified diff, writing nothing")
    p.add_argument("path", nargs="?", default=None,
                   help="directory holding vllm/ (source tree or site-packages); default: installed vLLM")
    p.add_argument("--vllm-version", default=None, help="the tree's version, when it cannot be read")
    p.set_defaults(fn=cmd_patch)
    args = parser.parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
