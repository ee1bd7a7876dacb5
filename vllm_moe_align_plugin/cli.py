"""``vllm-moe-align``: info, verify, bench.

- ``info``    versions, backends built, CUDA archs, whether vLLM discovers the
              plugin, the contract in force.
- ``verify``  random cases against the pure-torch reference on every device.
- ``bench``   the plugin against the reference (and vLLM's / SGLang's compiled
              op when present) on the available device.
- ``patch``   check | apply | revert the static vLLM patch (patches/README.md).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import random
import sys
from typing import Optional

import torch

from . import __version__, _ops
from .contract import ALL, NEWEST, contract_for_vllm


def _devices() -> list[str]:
    devices = ["cpu"] if _ops.has_backend("cpu") else []
    if torch.cuda.is_available() and _ops.has_backend("cuda"):
        devices.append("cuda")
    return devices


def _cuda_archs() -> str:
    """Archs the compiled library was built for (TORCH_CUDA_ARCH_LIST at build)."""
    if not _ops.has_backend("cuda"):
        return "-"
    from . import _C

    return _C.cuda_archs().replace("_", " ") or "unknown"


def cmd_info(_: argparse.Namespace) -> int:
    from .vllm_plugin import DISABLE_ENV, PLUGIN_NAME, installed_vllm_version

    vllm_version = installed_vllm_version()
    eps = importlib.metadata.entry_points(group="vllm.general_plugins")
    discovered = any(ep.name == PLUGIN_NAME for ep in eps)
    contract = contract_for_vllm(vllm_version) if vllm_version else None
    print(f"vllm-moe-align-plugin {__version__}")
    print(f"torch                 {torch.__version__} (CUDA {torch.version.cuda})")
    print(f"vLLM                  {vllm_version or 'not installed'}")
    if not _ops.available():
        print(f"compiled op           FAILED TO LOAD: {_ops.LOAD_ERROR}")
        return 1
    backends = [d for d in ("cpu", "cuda") if _ops.has_backend(d)]
    print(f"backends built        {', '.join(backends)}")
    print(f"CUDA archs            {_cuda_archs()}")
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    print(f"GPU                   {gpu}")
    print(f"vLLM discovers plugin {'yes' if discovered else 'no'} "
          f"(entry point vllm.general_plugins:{PLUGIN_NAME}; off switch {DISABLE_ENV}=1)")
    if vllm_version is None:
        print(f"contract in force     {NEWEST.name} (standalone: newest)")
    elif contract is None:
        print(f"contract in force     none: vLLM {vllm_version} is unknown, vLLM is left alone")
    else:
        print(f"contract in force     {contract.name}")
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
    from .reference import moe_align_block_size_reference

    _ops.require()
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
        emap = None
        if c["map_mode"] != "none":
            emap = torch.where(torch.rand(E, generator=g) < 0.5,
                               torch.randperm(E, generator=g), torch.tensor(-1)).to(torch.int32)
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

    _ops.require()
    device = args.device or ("cuda" if "cuda" in _devices() else "cpu")
    cases = bench.QUICK_CASES if args.quick else bench.CASES
    impls = bench.available_impls(device)
    eager_calls = 200 if args.quick else 2000
    if device == "cpu":
        eager_calls = 20 if args.quick else 100
    rows = bench.run(cases, device, impls, eager_calls=eager_calls)
    gpu = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(f"moe_align_block_size on {gpu} (outputs validated against the reference first)")
    print(bench.format_table(rows, device))
    return 0


def cmd_patch(args: argparse.Namespace) -> int:
    """check: 0 when the tree is pristine or patched, 1 otherwise; apply/revert:
    0 when done, 1 (files untouched) when refused."""
    from . import patching

    try:
        target = patching.load_target(args.path, args.vllm_version)
        print(f"vLLM {target.version} at {target.root} (version from {target.version_source})")
        print(f"patch   patches/{target.line.patch_file} ({target.contract.name} contract)")
        if args.action == "check":
            for f in target.files:
                print(f"  {f.rel}: {f.status} ({f.detail})")
            status = target.status()
            hint = {patching.PRISTINE: "`vllm-moe-align patch apply` patches it",
                    patching.PATCHED: "`vllm-moe-align patch revert` restores it"}
            print(f"state: {status} ({hint.get(status, 'apply and revert refuse this tree')})")
            return 0 if status in hint else 1
        done = patching.apply(target) if args.action == "apply" else patching.revert(target)
        for path in done:
            print(f"  {'patched' if args.action == 'apply' else 'reverted'} {path}")
        return 0
    except patching.PatchError as exc:
        print(f"vllm-moe-align patch {args.action}: refused: {exc}", file=sys.stderr)
        return 1


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="vllm-moe-align", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions, backends, contract").set_defaults(fn=cmd_info)
    p = sub.add_parser("verify", help="random cases against the reference on every device")
    p.add_argument("--cases", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=cmd_verify)
    p = sub.add_parser("bench", help="time the plugin against the reference and vLLM's op")
    p.add_argument("--quick", action="store_true", help="a few shapes, fewer calls")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None)
    p.set_defaults(fn=cmd_bench)
    p = sub.add_parser("patch", help="check, apply or revert the static vLLM patch (patches/)")
    p.add_argument("action", choices=["check", "apply", "revert"])
    p.add_argument("path", nargs="?", default=None,
                   help="directory holding vllm/ (source tree or site-packages); default: installed vLLM")
    p.add_argument("--vllm-version", default=None, help="the tree's version, when it cannot be read")
    p.set_defaults(fn=cmd_patch)
    args = parser.parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
