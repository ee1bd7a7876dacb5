"""benchmarks/e2e_bundle.py: the device package list, the requirement
closure check, stripping, part planning, and pack/unpack round trips."""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest
from conftest import load_script

MIB = 1 << 20

b: Any = load_script("benchmarks/e2e_bundle.py")


def test_pins_are_unique_and_exact() -> None:
    pins = b.pins()
    names = [b.normalize(p.split("==")[0]) for p in pins]
    assert all("==" in p for p in pins) and len(names) == len(set(names))
    assert f"vllm=={b.VLLM_VERSION}" in pins
    device = b.device_packages(None)
    # nothing the GPU machine has, except the documented override
    assert set(names) & device == {"typing-extensions"}
    assert not set(names) & set(b.LEFT_OUT)
    assert "torch" in device and "transformers" in device and "pydantic" not in device


def test_parse_kinds(tmp_path: Path) -> None:
    p = tmp_path / "KINDS.md"
    p.write_text("x\nnvidia-h100-x1, nvidia-h200, y: their image holds these. Packages: a, B_c, d.\n")
    assert b.parse_kinds(p) == ["a", "B_c", "d"]
    p.write_text("nothing\n")
    with pytest.raises(ValueError):
        b.parse_kinds(p)


def _wheel(directory: Path, name: str, version: str, requires: list[str]) -> Path:
    path = directory / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    meta = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    meta += [f"Requires-Dist: {r}" for r in requires]
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{name.replace('-', '_')}-{version}.dist-info/METADATA", "\n".join(meta) + "\n\nbody\n")
    return path


def test_closure(tmp_path: Path) -> None:
    pytest.importorskip("packaging")
    _wheel(tmp_path, "pydantic", "2.14.4", ["pydantic-core==2.50.5", "typing-extensions>=4.16.0"])
    _wheel(tmp_path, "pydantic-core", "2.50.5", [])
    _wheel(tmp_path, "typing-extensions", "4.16.0", [])
    _wheel(tmp_path, "vllm", "0.26.0", [
        "torch==2.11.0", "pydantic>=2.12", "flashinfer-python==0.6.14", "six>=1.16; python_version > '3.11'",
        "zentorch==2.11.0.0; extra == 'zen'", "pywin32; sys_platform == 'win32'"])
    wheels = sorted(tmp_path.glob("*.whl"))
    report = b.check_closure(wheels, "3.12", b.device_packages(None))
    assert report.ok, (report.missing, report.wrong_version)
    assert set(report.on_device) == {"torch", "six"} and set(report.left_out) == {"flashinfer-python"}
    report311 = b.check_closure(wheels, "3.11", b.device_packages(None))
    assert "six" not in report311.on_device  # marker false on 3.11
    _wheel(tmp_path, "openai", "3.57.0", ["jiter>=0.16", "pydantic<2"])
    bad = b.check_closure(sorted(tmp_path.glob("*.whl")), "3.12", b.device_packages(None))
    assert not bad.ok and "jiter" in bad.missing and any("pydantic<2" in w for w in bad.wrong_version)


def test_strip(tmp_path: Path) -> None:
    site = tmp_path / "site"
    for rel in (*b.REQUIRED, "vllm/vllm_flash_attn/_vllm_fa2_C.abi3.so", "vllm/vllm-rs",
                "vllm/third_party/deep_gemm/_C.so", "vllm/third_party/pynvml.py", "bin/vllm",
                "vllm/__pycache__/x.pyc"):
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text("x")
    removed = b.strip_tree(site)
    assert "vllm/third_party/deep_gemm/" in removed and "bin/" in removed
    assert not (site / "vllm/vllm-rs").exists() and not (site / "vllm/__pycache__").exists()
    assert (site / "vllm/third_party/pynvml.py").exists()
    assert "Placeholder" in (site / "vllm/vllm_flash_attn/_vllm_fa2_C.py").read_text()
    (site / b.REQUIRED[0]).unlink()
    with pytest.raises(FileNotFoundError):
        b.strip_tree(site)


def test_plan_parts() -> None:
    sizes = {"big/a.so": 100, "big/b.so": 80, **{f"pkg/{i:02d}.py": 10 for i in range(20)}}
    est = {"big/a.so": 50.0 * MIB, "big/b.so": 40.0 * MIB,
           **{f"pkg/{i:02d}.py": 1.0 * MIB for i in range(20)}}
    parts = b.plan_parts(sizes, est, 58.0 * MIB)
    assert sorted(f for p in parts for f in p.files) == sorted(sizes)
    assert all(p.estimate <= 58.0 * MIB for p in parts) and len(parts) == 2
    assert parts[0].files[0] == "big/a.so" and parts[1].files[0] == "big/b.so"
    small = [f for p in parts for f in p.files if f.startswith("pkg/")]
    assert small == sorted(small)  # path order kept across parts
    assert [len(p.files) for p in parts] == [1 + 8, 1 + 12]  # 50 + 8, 40 + 12 MiB
    # first fit: a file too big for the first part's rest does not close that part
    tight = b.plan_parts({"a": 1, "b": 1, "c": 1}, {"a": 50.0 * MIB, "b": 9.0 * MIB, "c": 5.0 * MIB},
                         58.0 * MIB)
    assert [p.files for p in tight] == [["a", "c"], ["b"]]
    with pytest.raises(ValueError):
        b.plan_parts({"x": 1}, {"x": 60.0 * MIB}, 58.0 * MIB)


@pytest.mark.skipif(shutil.which("xz") is None or shutil.which("tar") is None, reason="needs tar and xz")
def test_pack_unpack_round_trip(tmp_path: Path) -> None:
    site = tmp_path / "site"
    rng = __import__("random").Random(0)
    files = {}
    for i in range(12):
        rel = f"pkg{i % 3}/mod{i}.bin"
        data = bytes(rng.getrandbits(8) for _ in range(48 * 1024))  # incompressible
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_bytes(data)
        files[rel] = data
    (site / "pkg0/exe.sh").write_text("#!/bin/sh\n")
    os.chmod(site / "pkg0/exe.sh", 0o755)
    out, work = tmp_path / "parts", tmp_path / "work"
    work.mkdir()
    parts = b.pack(site, out, max_mib=0.2, xz_opts=["-1"], work=work)
    assert len(parts) >= 3 and all(size <= 0.2 * MIB for _, size, _ in parts)
    dest = tmp_path / "dest"
    carried = tmp_path / "carried"
    carried.mkdir()
    for k, (name, _, _) in enumerate(parts):  # one part per "run"
        for old in carried.glob("*"):
            old.unlink()
        shutil.copy(out / name, carried / name)
        assert b.unpack(carried, dest) == [name]
        assert b.unpack(carried, dest) == []  # idempotent
        have, missing = b.status(dest)
        assert len(have) == k + 1 and len(missing) == len(parts) - k - 1
    for rel, data in files.items():
        assert (dest / rel).read_bytes() == data
    assert os.access(dest / "pkg0/exe.sh", os.X_OK)
    manifest = json.loads((dest / b.MANIFEST_DIR / b.MANIFEST).read_text())
    assert manifest["parts"] == [n for n, _, _ in parts] and manifest["files"] == 13
    assert b.main(["status", str(dest)]) == 0
    assert b.main(["status", str(tmp_path / "empty")]) == 1
