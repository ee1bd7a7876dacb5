#!/usr/bin/env python3
"""vLLM 0.26.0 for GPU machines without a network: what to bundle, and how.

The GPU machines this project borrows have Python 3.12, torch 2.11.0+cu130,
transformers and most of the scientific stack, but no vLLM and no network, and
each run carries at most about 60 MiB of extra files. This tool is the logic
behind ``benchmarks/e2e_bundle.sh`` (build the bundle where PyPI is reachable)
and ``benchmarks/e2e_unpack.sh`` (unpack it on the GPU machine):

``pins``      the ``NAME==VERSION`` lines to download: vLLM's offline-inference
              dependencies that the GPU machine lacks (``BUNDLE``).
``closure``   checks downloaded wheels: every requirement of every wheel is
              bundled, present on the GPU machine (``DEVICE_PACKAGES``) or
              deliberately left out (``LEFT_OUT``, each with its reason).
``strip``     removes from an unpacked vLLM what the bf16, Triton-attention,
              Triton-MoE path never loads (``STRIP``), and writes the one
              placeholder that path needs (``PLACEHOLDERS``).
``pack``      packs a tree into ``part-NN.tar.xz`` files of at most ``--max-mib``
              MiB each, split by files (every part unpacks on its own).
``unpack``    unpacks every part of a folder into a tree; idempotent (one
              marker per part).
``status``    says whether every part of the bundle has been unpacked.

Contract: ``pack`` fails (exit 1) rather than write a part over the limit; a
single file whose compressed size exceeds the limit is an error. ``unpack``
fails on a damaged part and never leaves a marker for a part it did not finish.
Only the standard library is needed, except ``closure`` (``packaging``, or pip's
vendored copy).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

VLLM_VERSION = "0.26.0"
MIB = 1 << 20
MANIFEST_DIR = ".e2e-bundle"  # inside the unpacked tree
MANIFEST = "manifest.json"
MARKER_SUFFIX = ".done"

# The GPU machine's Python packages: the list of the 'cuda' image in
# /work/.library/device/KINDS.md ("Python packages already there", read on
# 2026-11-17; the same image serves nvidia-h100-x1/x2 and nvidia-h200*).
# `--kinds PATH` parses a newer copy of that file instead.
DEVICE_PACKAGES = (
    "absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs "
    "botorch build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy "
    "coverage cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython "
    "diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools formulaic "
    "frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize "
    "hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib "
    "jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities linear-operator "
    "lineax llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes "
    "mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals networkx "
    "ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc "
    "nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand "
    "nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13 "
    "nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript optax "
    "opencv-python-headless opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas "
    "pathspec patsy peft "
    "pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 "
    "py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark "
    "pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml "
    "regex requests rich sacrebleu safetensors scikit-build-core scikit-image scikit-learn scipy "
    "seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six "
    "sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore "
    "threadpoolctl tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq "
    "torch-geometric torchmetrics torchvision tqdm transformers treescope triton typer "
    "typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray "
    "xxhash yarl zipp"
).split()

# What is bundled, pinned to the versions pip resolved for vllm==0.26.0 (and
# torch 2.11.0) on PyPI. Each group says why it is needed. The top-level
# imports were found by importing vLLM's offline path on a CPU machine with a
# fake NVML (CUDA platform selected) and recording which modules came from the
# bundle; the rest is the install closure of those packages.
BUNDLE: dict[str, tuple[str, ...]] = {
    # vLLM itself (stripped, see STRIP)
    "vllm": ("vllm==" + VLLM_VERSION,),
    # configs (vllm.config.*), the engine's msgspec/zmq IPC, request hashing
    "imported by vllm.config, vllm.v1.engine, vllm.v1.serial_utils": (
        "pydantic==2.14.4", "pydantic-core==2.50.5", "annotated-types==0.8.0",
        "typing-inspection==0.4.5", "msgspec==0.22.0", "pyzmq==27.3.0", "cbor2==6.3.0",
        "cachetools==8.0.2", "pybase64==1.5.1", "partial-json-parser==0.2.1.1.post7",
    ),
    # vllm.entrypoints.llm -> vllm.reasoning -> vllm.entrypoints.mcp.tool -> openai
    "imported by vllm.entrypoints.llm (reasoning/tool parsers, chat utils)": (
        "openai==3.57.0", "httpx2==2.16.2", "httpcore2==2.16.2", "truststore==0.10.5",
        "jiter==0.19.0", "sniffio==1.3.1", "openai-harmony==0.0.8", "fastapi==0.136.3",
        "starlette==1.10.0", "python-multipart==0.0.34", "email-validator==2.4.0",
        "dnspython==2.9.2", "opentelemetry-api==1.45.2",
    ),
    # vllm.transformers_utils / tokenizers registry -> mistral_common
    "imported by vllm.tokenizers (mistral_common)": (
        "mistral-common==1.13.1", "pydantic-extra-types==2.11.1", "pycountry==26.2.16",
        "jsonschema==4.26.0", "jsonschema-specifications==2025.9.1", "referencing==0.37.0",
        "rpds-py==2026.9.1",
    ),
    # vllm.v1.structured_output (imported by the scheduler) evaluates xgrammar
    # and llguidance types at class definition
    "imported by vllm.v1.core.sched.scheduler (structured output)": (
        "xgrammar==0.2.7", "apache-tvm-ffi==0.1.10", "llguidance==1.7.6",
    ),
    # small native helpers vLLM uses when present
    "optional helpers (process titles, multimodal hashing)": ("setproctitle==1.3.8", "blake3==1.0.11"),
    # The machine has typing-extensions, in a version nobody recorded;
    # pydantic 2.14.4 needs >= 4.16.0 (a newer typing-extensions only adds names).
    "override of a machine package (version requirement)": ("typing-extensions==4.16.0",),
}

# vLLM 0.26.0 requirements deliberately left out, and why (closure check).
LEFT_OUT: dict[str, str] = {
    **dict.fromkeys(
        ("fastapi-cli", "fastapi-cloud-cli", "uvicorn", "httptools", "watchfiles", "websockets",
         "python-dotenv", "prometheus-fastapi-instrumentator", "sse-starlette", "pyjwt",
         "model-hosting-container-standards", "ijson", "python-json-logger"),
        "HTTP server only (vllm serve)"),
    **dict.fromkeys(("anthropic", "mcp", "mcp-types"), "API-server tool use only; not imported offline"),
    **dict.fromkeys(
        ("opentelemetry-sdk", "opentelemetry-exporter-otlp", "opentelemetry-semantic-conventions-ai",
         "importlib-metadata"),
        "tracing, imported only when OTLP tracing is configured"),
    **dict.fromkeys(("lm-format-enforcer", "outlines-core", "lark"),
                    "structured-output backends, imported on first guided request"),
    "depyf": "torch.compile debug dumps only",
    "compressed-tensors": "quantized checkpoints only (this benchmark is bf16)",
    **dict.fromkeys(("torchcodec", "pynvvideocodec"), "video inputs only"),
    **dict.fromkeys(
        ("flashinfer-python", "tilelang", "nvidia-cudnn-frontend", "nvtx", "fastsafetensors",
         "nvidia-cutlass-dsl", "quack-kernels", "tokenspeed-mla", "humming-kernels"),
        "optional kernel libraries, not on the bf16 Triton attention / Triton MoE path"),
    **dict.fromkeys(("pywin32", "httpx2-jsfetch", "cffi"), "other platforms / implementations"),
}

# What the bf16 Triton-attention path never loads (sizes: the 0.26.0 wheel's,
# unpacked), relative to the tree's root.
STRIP = (
    "vllm/vllm_flash_attn/_vllm_fa2_C.abi3.so",  # 290 MiB, FlashAttention 2
    "vllm/vllm_flash_attn/_vllm_fa3_C.abi3.so",  # 146 MiB, FlashAttention 3
    "vllm/vllm-rs",  # 41 MiB, Rust front end binary
    "vllm/third_party/deep_gemm",  # 35 MiB, fp8 GEMMs (vLLM falls back when absent)
    "vllm/third_party/fmha_sm100",  # 30 MiB, Blackwell attention sources
    "vllm/third_party/tml_fa4",  # FlashAttention 4 (Blackwell)
    "vllm/_flashmla_C.abi3.so",  # MLA models only
    "vllm/_flashmla_extension_C.abi3.so",
    "vllm/_qutlass_C.abi3.so",  # fp4 quantization; imported optionally
    "bin",  # console scripts with this machine's interpreter path
    # data of bundled dependencies that offline inference never reads (6 MiB xz):
    "mistral_common/data",  # MistralTokenizer.v1()..v7() presets; vLLM reads the model's files
    "pycountry/locales",  # gettext translations of country names
)
# vllm/v1/attention/backends/fa_utils.py imports vllm.vllm_flash_attn on every
# CUDA machine (from the model definitions), and that package raises ImportError
# unless one of its extensions imports. A module of that name satisfies the
# import; nothing on the Triton attention path calls torch.ops._vllm_fa2_C.
PLACEHOLDERS = {
    "vllm/vllm_flash_attn/_vllm_fa2_C.py": (
        '"""Placeholder written by benchmarks/e2e_bundle.py: the FlashAttention-2 extension\n'
        "was left out of this bundle. It registers no op; select TRITON_ATTN.\"\"\"\n"
    ),
}
# Files that must be in the tree for vLLM's CUDA path to load at all.
REQUIRED = (
    "vllm/_C_stable_libtorch.abi3.so",
    "vllm/_moe_C_stable_libtorch.abi3.so",
    "vllm/__init__.py",
    f"vllm-{VLLM_VERSION}.dist-info/METADATA",
)


def normalize(name: str) -> str:
    """PEP 503 name: lower case, runs of ``-_.`` as one ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_kinds(path: Path) -> list[str]:
    """The package names of the line ``nvidia-h100-x1, nvidia-h200, ...`` of
    KINDS.md (``... Packages: a, b, c.``)."""
    for line in path.read_text().splitlines():
        if line.startswith("nvidia-h100-x1, nvidia-h200") and "Packages:" in line:
            names = line.split("Packages:", 1)[1].strip().rstrip(".")
            return [n.strip() for n in names.split(",") if n.strip()]
    raise ValueError(f"{path}: no package line for the 'cuda' image")


def device_packages(kinds: Optional[Path]) -> set[str]:
    """The GPU machine's packages, normalized (from ``kinds`` when given)."""
    return {normalize(n) for n in (parse_kinds(kinds) if kinds else DEVICE_PACKAGES)}


def pins() -> list[str]:
    """Every ``NAME==VERSION`` of BUNDLE, in group order."""
    return [pin for group in BUNDLE.values() for pin in group]


# --------------------------------------------------------------------------- closure


def _packaging() -> tuple[type, type]:
    try:
        from packaging.markers import Marker
        from packaging.requirements import Requirement
    except ImportError:  # pip's vendored copy
        from pip._vendor.packaging.markers import Marker  # type: ignore[no-redef]
        from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef]
    return Requirement, Marker


def wheel_metadata(path: Path) -> tuple[str, str, list[str]]:
    """(name, version, Requires-Dist lines) of a wheel."""
    with zipfile.ZipFile(path) as zf:
        meta_name = next(n for n in zf.namelist() if re.match(r"[^/]+\.dist-info/METADATA$", n))
        text = zf.read(meta_name).decode("utf-8", "replace")
    headers = text.split("\n\n", 1)[0].splitlines()
    get = {k: v for k, _, v in (h.partition(": ") for h in headers) if k in ("Name", "Version")}
    reqs = [h.split(": ", 1)[1] for h in headers if h.startswith("Requires-Dist: ")]
    return get["Name"], get["Version"], reqs


def marker_env(python_version: str) -> dict[str, str]:
    """Marker environment of CPython ``python_version`` on Linux x86_64."""
    return {
        "python_version": python_version, "python_full_version": python_version + ".0",
        "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
        "implementation_name": "cpython", "platform_python_implementation": "CPython",
        "os_name": "posix", "platform_release": "", "platform_version": "", "extra": "",
    }


@dataclass
class ClosureReport:
    """Result of ``check_closure``: requirement -> who needs it, by outcome."""

    bundled: dict[str, str] = field(default_factory=dict)  # name -> version
    on_device: dict[str, list[str]] = field(default_factory=dict)
    left_out: dict[str, list[str]] = field(default_factory=dict)
    missing: dict[str, list[str]] = field(default_factory=dict)
    wrong_version: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.wrong_version


def check_closure(wheels: list[Path], python_version: str, device: set[str]) -> ClosureReport:
    """Sorts every (marker-true, non-extra) requirement of ``wheels`` into
    bundled / on the device / deliberately left out / missing; a bundled
    version outside a requirement's specifier is reported too."""
    requirement_cls, _ = _packaging()
    env = marker_env(python_version)
    report = ClosureReport()
    metas = [wheel_metadata(w) for w in wheels]
    for name, version, _ in metas:
        report.bundled[normalize(name)] = version
    for name, _, reqs in metas:
        for line in reqs:
            req = requirement_cls(line)
            if req.marker is not None and not req.marker.evaluate(env):
                continue
            dep = normalize(req.name)
            if dep in report.bundled:
                if req.specifier and not req.specifier.contains(report.bundled[dep], prereleases=True):
                    report.wrong_version.append(f"{name} needs {line}; bundled {report.bundled[dep]}")
            elif dep in device:
                report.on_device.setdefault(dep, []).append(name)
            elif dep in LEFT_OUT:
                report.left_out.setdefault(dep, []).append(name)
            else:
                report.missing.setdefault(dep, []).append(f"{name} ({line})")
    return report


# --------------------------------------------------------------------------- strip


def strip_tree(site: Path) -> list[str]:
    """Removes STRIP from ``site`` and writes PLACEHOLDERS; checks REQUIRED.
    Returns what was removed (paths relative to ``site``)."""
    removed = []
    for rel in STRIP:
        target = site / rel
        if target.is_dir():
            shutil.rmtree(target)
            removed.append(rel + "/")
        elif target.exists():
            target.unlink()
            removed.append(rel)
    for rel, text in PLACEHOLDERS.items():
        (site / rel).write_text(text)
    for cache in sorted(site.rglob("__pycache__"), reverse=True):
        shutil.rmtree(cache, ignore_errors=True)
    missing = [rel for rel in REQUIRED if not (site / rel).exists()]
    if missing:
        raise FileNotFoundError(f"{site}: required files missing after strip: {missing}")
    return removed


# --------------------------------------------------------------------------- pack


@dataclass
class Part:
    """Files of one part and their estimated compressed size (bytes)."""

    files: list[str] = field(default_factory=list)
    estimate: float = 0.0


def plan_parts(sizes: dict[str, int], estimates: dict[str, float], capacity: float) -> list[Part]:
    """Splits files into parts whose estimated compressed sizes stay within
    ``capacity``. Large files (estimate >= capacity / 8) go first, largest
    first, each into the first part with room; the rest follow in path order,
    each into the first part with room (first fit: the parts fill up tightly,
    and files of one package mostly stay together).

    ``sizes``: path -> raw size; ``estimates``: path -> estimated compressed
    size. Raises ValueError when one file alone does not fit."""
    parts: list[Part] = []

    def place(path: str) -> None:  # first fit
        target = next((p for p in parts if p.estimate + estimates[path] <= capacity), None)
        if target is None:
            target = Part()
            parts.append(target)
        target.files.append(path)
        target.estimate += estimates[path]

    big = sorted((p for p in sizes if estimates[p] >= capacity / 8), key=lambda p: -estimates[p])
    for path in big:
        if estimates[path] > capacity:
            raise ValueError(f"{path}: about {estimates[path] / MIB:.1f} MiB compressed, over the "
                             f"{capacity / MIB:.1f} MiB a part may hold")
        place(path)
    for path in sorted(p for p in sizes if estimates[p] < capacity / 8):
        place(path)
    return parts


def _xz_size(path: Path, xz_opts: list[str]) -> int:
    with open(path, "rb") as src:
        proc = subprocess.run(["xz", *xz_opts, "-c"], stdin=src, stdout=subprocess.PIPE, check=True)
    return len(proc.stdout)


def measure(site: Path, files: list[str], xz_opts: list[str], cache_path: Path,
            big_bytes: int) -> dict[str, float]:
    """Estimated compressed size of each file: files of at least ``big_bytes``
    are compressed alone (results cached in ``cache_path`` by path, content
    hash and xz options); smaller ones get the ratio of all small files compressed together."""
    cache: dict[str, int] = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    estimates: dict[str, float] = {}
    small = []
    for rel in files:
        st = (site / rel).stat()
        if st.st_size >= big_bytes:
            digest = hashlib.sha256((site / rel).read_bytes()).hexdigest()[:20]
            key = f"{rel}:{st.st_size}:{digest}:{' '.join(xz_opts)}"
            if key not in cache:
                print(f"  measuring {rel} ({st.st_size / MIB:.1f} MiB) ...", flush=True)
                cache[key] = _xz_size(site / rel, xz_opts)
            estimates[rel] = float(cache[key])
        else:
            small.append(rel)
    cache_path.write_text(json.dumps(cache, indent=1))
    if small:
        raw = sum((site / rel).stat().st_size for rel in small)
        with tempfile.TemporaryDirectory() as tmp:
            lst = Path(tmp) / "files"
            lst.write_text("\n".join(small) + "\n")
            tar = subprocess.Popen(["tar", "-C", str(site), "-cf", "-", "--no-recursion", "-T", str(lst)],
                                   stdout=subprocess.PIPE)
            xz = subprocess.run(["xz", *xz_opts, "-c"], stdin=tar.stdout, stdout=subprocess.PIPE, check=True)
            tar.wait()
        ratio = len(xz.stdout) / max(raw, 1)  # tar headers and padding included
        print(f"  {len(small)} small files: {raw / MIB:.1f} MiB raw, ratio {ratio:.3f}", flush=True)
        for rel in small:
            estimates[rel] = (site / rel).stat().st_size * ratio
    return estimates


def list_files(site: Path) -> list[str]:
    """Every regular file and symlink under ``site``, relative, sorted."""
    out = []
    for root, dirs, names in os.walk(site):
        dirs.sort()
        for name in sorted(names):
            path = Path(root) / name
            if path.is_file() or path.is_symlink():
                out.append(str(path.relative_to(site)))
    return out


def write_part(site: Path, files: list[str], dest: Path, xz_opts: list[str]) -> int:
    """tar | xz of ``files`` (relative to ``site``) into ``dest``; its size."""
    with tempfile.TemporaryDirectory() as tmp:
        lst = Path(tmp) / "files"
        lst.write_text("\n".join(files) + "\n")
        tmp_dest = dest.with_suffix(".partial")
        with open(tmp_dest, "wb") as out:
            tar = subprocess.Popen(
                ["tar", "-C", str(site), "-cf", "-", "--no-recursion", "--owner=0", "--group=0",
                 "--numeric-owner", "-T", str(lst)], stdout=subprocess.PIPE)
            subprocess.run(["xz", *xz_opts, "-c"], stdin=tar.stdout, stdout=out, check=True)
            if tar.wait() != 0:
                raise RuntimeError(f"tar failed for {dest}")
        tmp_dest.replace(dest)
    return dest.stat().st_size


def pack(site: Path, out: Path, max_mib: float, xz_opts: list[str], work: Path) -> list[tuple[str, int, int]]:
    """Packs ``site`` into ``out/part-NN.tar.xz``, each at most ``max_mib``
    MiB, with a manifest (inside every part) naming the parts. Retries with a
    smaller planning capacity when an estimate fell short. Returns
    (name, bytes, number of files) per part."""
    limit = int(max_mib * MIB)
    files = [f for f in list_files(site) if not f.startswith(MANIFEST_DIR + "/")]
    sizes = {f: (site / f).lstat().st_size for f in files}
    estimates = measure(site, files, xz_opts, work / "xz-sizes.json", big_bytes=4 * MIB)
    capacity = limit * 0.985  # the estimates came within 0.5% of the real sizes
    for _attempt in range(6):
        plan = plan_parts(sizes, estimates, capacity)
        names = [f"part-{i:02d}.tar.xz" for i in range(len(plan))]
        manifest = {
            "vllm": VLLM_VERSION, "parts": names, "files": len(files),
            "bytes_unpacked": sum(sizes.values()),
            "packages": pins(),
        }
        (site / MANIFEST_DIR).mkdir(exist_ok=True)
        (site / MANIFEST_DIR / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        out.mkdir(parents=True, exist_ok=True)
        for old in out.glob("part-*.tar.xz"):
            old.unlink()
        result = []
        over = 0.0
        for name, part in zip(names, plan):
            members = [*part.files, f"{MANIFEST_DIR}/{MANIFEST}"]
            size = write_part(site, members, out / name, xz_opts)
            result.append((name, size, len(members)))
            print(f"  {name}: {size / MIB:6.2f} MiB ({len(members)} files; estimated "
                  f"{part.estimate / MIB:.2f})", flush=True)
            over = max(over, size / limit)
        if over <= 1.0:
            return result
        capacity = capacity / over * 0.98
        print(f"  a part came out over {max_mib} MiB; planning again with {capacity / MIB:.1f} MiB",
              flush=True)
    raise RuntimeError("could not pack within the part size limit")


# --------------------------------------------------------------------------- unpack


def _marker(dest: Path, part: Path) -> Path:
    return dest / MANIFEST_DIR / (part.name + MARKER_SUFFIX)


def unpack(parts_dir: Path, dest: Path) -> list[str]:
    """Unpacks every ``part-*.tar.xz`` of ``parts_dir`` into ``dest`` that
    has no marker yet (marker: ``dest/.e2e-bundle/<part>.done`` holding the
    part's sha256; a part whose content changed is unpacked again).
    Returns the names unpacked now."""
    done = []
    dest.mkdir(parents=True, exist_ok=True)
    for part in sorted(parts_dir.glob("part-*.tar.xz")):
        digest = hashlib.sha256(part.read_bytes()).hexdigest()
        marker = _marker(dest, part)
        if marker.exists() and marker.read_text().strip() == digest:
            print(f"{part.name}: already unpacked")
            continue
        with tarfile.open(part, "r:xz") as tar:
            if sys.version_info >= (3, 12):
                tar.extractall(dest, filter="data")
            else:
                tar.extractall(dest)  # noqa: S202 - our own archives
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(digest + "\n")
        done.append(part.name)
        print(f"{part.name}: unpacked into {dest}")
    return done


def status(dest: Path) -> tuple[list[str], list[str]]:
    """(parts unpacked, parts still missing) according to the manifest."""
    manifest_path = dest / MANIFEST_DIR / MANIFEST
    if not manifest_path.exists():
        return [], ["(no part unpacked yet)"]
    names = json.loads(manifest_path.read_text())["parts"]
    have = [n for n in names if (dest / MANIFEST_DIR / (n + MARKER_SUFFIX)).exists()]
    return have, [n for n in names if n not in have]


# --------------------------------------------------------------------------- CLI


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("pins", help="print the NAME==VERSION lines to download")
    c = sub.add_parser("closure", help="check the requirements of downloaded wheels")
    c.add_argument("wheels", type=Path)
    c.add_argument("--python-version", default="3.12")
    c.add_argument("--kinds", type=Path, default=None, help="KINDS.md to read the device list from")
    s = sub.add_parser("strip", help="strip an unpacked vLLM tree")
    s.add_argument("site", type=Path)
    p = sub.add_parser("pack", help="pack a tree into parts")
    p.add_argument("site", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--max-mib", type=float, default=58.0)
    p.add_argument("--xz-opts", default="-9 -T0")
    p.add_argument("--work", type=Path, default=None)
    u = sub.add_parser("unpack", help="unpack every part of a folder")
    u.add_argument("parts", type=Path)
    u.add_argument("dest", type=Path)
    t = sub.add_parser("status", help="exit 0 when every part is unpacked")
    t.add_argument("dest", type=Path)
    args = ap.parse_args(argv)

    if args.cmd == "pins":
        print("\n".join(pins()))
        return 0
    if args.cmd == "closure":
        wheels = sorted(args.wheels.glob("*.whl"))
        device = device_packages(args.kinds)
        if args.kinds is not None and device != device_packages(None):
            print(f"note: {args.kinds} differs from DEVICE_PACKAGES (using the file): only in the "
                  f"file: {sorted(device - device_packages(None))}; only in the script: "
                  f"{sorted(device_packages(None) - device)}")
        report = check_closure(wheels, args.python_version, device)
        print(f"{len(report.bundled)} wheels: " + ", ".join(f"{n}=={v}" for n, v in
                                                          sorted(report.bundled.items())))
        print(f"on the GPU machine already ({len(report.on_device)}): "
              + ", ".join(sorted(report.on_device)))
        for dep, who in sorted(report.left_out.items()):
            print(f"left out: {dep} ({LEFT_OUT[dep]}; required by {', '.join(sorted(set(who)))})")
        for dep, who in sorted(report.missing.items()):
            print(f"MISSING: {dep} required by {'; '.join(who)}")
        for line in report.wrong_version:
            print(f"VERSION: {line}")
        return 0 if report.ok else 1
    if args.cmd == "strip":
        for rel in strip_tree(args.site):
            print(f"removed {rel}")
        return 0
    if args.cmd == "pack":
        work = args.work or args.out.parent
        work.mkdir(parents=True, exist_ok=True)
        parts = pack(args.site, args.out, args.max_mib, args.xz_opts.split(), work)
        total = sum(size for _, size, _ in parts)
        print(f"{len(parts)} parts, {total / MIB:.2f} MiB in all, in {args.out}")
        return 0
    if args.cmd == "unpack":
        unpack(args.parts, args.dest)
        have, missing = status(args.dest)
        print(f"bundle in {args.dest}: {len(have)} of {len(have) + len(missing)} parts unpacked"
              + (f"; still to carry: {', '.join(missing)}" if missing else "; complete"))
        return 0
    if args.cmd == "status":
        have, missing = status(args.dest)
        print(f"{len(have)} parts unpacked; missing: {', '.join(missing) or 'none'}")
        return 0 if not missing else 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
