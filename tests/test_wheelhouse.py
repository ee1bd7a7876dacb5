"""tools/wheelhouse: requirement and package lists, profiles, the closure check,
stripping, part planning, pack/unpack round trips, an offline build from a
local folder of wheels, the in-place entry points, and the shell drivers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tools.wheelhouse import build, cli, envcheck, inplace, parts, spec
from tools.wheelhouse.closure import check_closure

MIB = 1 << 20
REPO = Path(__file__).resolve().parent.parent
HERE = REPO / "tools" / "wheelhouse"
VLLM = spec.load_profile(HERE / "vllm-0.26.ini")
HAS_TAR_XZ = shutil.which("xz") is not None and shutil.which("tar") is not None


def test_vllm_profile() -> None:
    pins = spec.exact_pins(VLLM.requirements)
    assert pins is not None and len(pins) == len(VLLM.requirements)  # all pinned, no duplicates
    assert pins["vllm"] == "0.26.0" and "torch" not in pins
    assert (VLLM.python_version, VLLM.no_deps, VLLM.mode) == ("3.12", True, "tree")
    assert VLLM.platform.endswith("x86_64") and "vllm-0.26.0.dist-info/METADATA" in VLLM.required
    # nothing the target has, except the documented override; nothing left out is bundled
    assert set(pins) & VLLM.target_packages == {"typing-extensions"}
    assert not set(pins) & set(VLLM.left_out)
    assert {"torch", "transformers"} <= VLLM.target_packages and "pydantic" not in VLLM.target_packages
    assert cli.main(["pins", "--profile", str(HERE / "vllm-0.26.ini")]) == 0


def test_ray_profile_is_the_serving_profile_plus_ray() -> None:
    serve = spec.load_profile(HERE / "vllm-0.26-serve.ini")
    ray = spec.load_profile(HERE / "vllm-0.26-serve-ray.ini")
    assert ray.requirements == serve.requirements + ["ray==2.60.0"]
    assert (ray.python_version, ray.platform, ray.no_deps, ray.mode, ray.target_packages) == (
        serve.python_version, serve.platform, serve.no_deps, serve.mode, serve.target_packages)
    assert ray.left_out == serve.left_out and ray.placeholders == serve.placeholders
    added = set(ray.strip) - set(serve.strip)
    assert set(serve.strip) < set(ray.strip) and all(k.startswith("ray/") for k in added)
    assert ray.required[:len(serve.required)] == serve.required and "ray/_raylet.so" in ray.required
    # Ray's own requirements are all on the target: nothing else to bundle
    ray_needs = {"click", "filelock", "msgpack", "packaging", "protobuf", "pyyaml", "requests"}
    assert ray_needs <= ray.target_packages


def test_profile_base(tmp_path: Path) -> None:
    """``base``: the base's requirements first, sections merged (same key: the
    profile's own entry), target keys not given taken from the base."""
    (tmp_path / "a.txt").write_text("a==1\n")
    (tmp_path / "b.txt").write_text("b==2\n")
    (tmp_path / "t.txt").write_text("numpy\n")
    (tmp_path / "base.ini").write_text(
        "[target]\npython_version = 3.11\nrequirements = a.txt\ntarget_packages = t.txt\nno_deps = true\n"
        "[strip]\nx = base's reason\ny = kept\n[required]\nr1\n[left-out]\nZ_z = why\n")
    (tmp_path / "child.ini").write_text(
        "[target]\nbase = base.ini\nrequirements = b.txt\nmode = wheels\n"
        "[strip]\nx = child's reason\nw = new\n[required]\nr2\nr1\n")
    child = spec.load_profile(tmp_path / "child.ini")
    assert child.name == "child" and child.requirements == ["a==1", "b==2"]
    assert (child.python_version, child.no_deps, child.mode) == ("3.11", True, "wheels")
    assert child.target_packages == {"numpy"} and child.left_out == {"z-z": "why"}
    assert child.strip == {"x": "child's reason", "y": "kept", "w": "new"}
    assert child.required == ["r1", "r2"]
    (tmp_path / "loop1.ini").write_text("[target]\nbase = loop2.ini\n")
    (tmp_path / "loop2.ini").write_text("[target]\nbase = loop1.ini\n")
    with pytest.raises(ValueError, match="base"):
        spec.load_profile(tmp_path / "loop1.ini")


def test_requirement_files(tmp_path: Path) -> None:
    (tmp_path / "base.txt").write_text("# c\nNumPy==2.1.3  # inline\n\nsix>=1.16; python_version > '3.8'\n")
    (tmp_path / "top.txt").write_text("-r base.txt\nfoo_bar.baz==1.0\n")
    assert spec.read_requirements(tmp_path / "top.txt") == [
        "NumPy==2.1.3", "six>=1.16; python_version > '3.8'", "foo_bar.baz==1.0"]
    (tmp_path / "bad.txt").write_text("--index-url http://x\n")
    with pytest.raises(ValueError):
        spec.read_requirements(tmp_path / "bad.txt")
    assert spec.exact_pins(["a==1", "B_c==2.0; sys_platform == 'linux'"]) == {"a": "1", "b-c": "2.0"}
    assert spec.exact_pins(["a==1", "b>=2"]) is None
    (tmp_path / "freeze.txt").write_text("# target\nTyping_Extensions==4.12.0\ntorch @ file:///x\nsix\n")
    assert spec.read_names(tmp_path / "freeze.txt") == {"typing-extensions", "torch", "six"}


def test_platform_tags() -> None:
    tags = spec.platform_tags("manylinux_2_39_x86_64")
    assert tags[0] == "manylinux_2_39_x86_64" and tags[-3:] == [
        "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64"]
    assert len(tags) == 39 - 17 + 1 + 2
    assert spec.platform_tags("manylinux_2_28_aarch64")[-1] == "manylinux2014_aarch64"
    assert spec.platform_tags("macosx_11_0_arm64") == ["macosx_11_0_arm64"]
    assert spec.platform_machine("manylinux_2_28_aarch64") == "aarch64"


def test_profile_from_args(tmp_path: Path) -> None:
    (tmp_path / "reqs.txt").write_text("pydantic==2.14.4\n")
    (tmp_path / "target.txt").write_text("numpy\n")
    args = cli._parser().parse_args([
        "build", "six==1.17.0", "-r", str(tmp_path / "reqs.txt"), "--python-version", "3.11",
        "--target-packages", str(tmp_path / "target.txt"), "--mode", "wheels", "--no-deps"])
    profile = cli.profile_from_args(args)
    assert profile.requirements == ["pydantic==2.14.4", "six==1.17.0"]
    assert (profile.python_version, profile.mode, profile.no_deps) == ("3.11", "wheels", True)
    assert profile.target_packages == {"numpy"} and profile.name == "wheelhouse"
    args = cli._parser().parse_args(["build", "--profile", str(HERE / "vllm-0.26.ini"), "--platform", "x"])
    profile = cli.profile_from_args(args)
    assert profile.platform == "x" and profile.requirements == VLLM.requirements
    opts = build.BuildOptions(python="py", pip_args=["--index-url=U"])
    cmd = build.download_command(profile, Path("w"), opts)
    assert cmd[:6] == ["py", "-m", "pip", "download", "-q", "--no-deps"]
    assert cmd[cmd.index("--python-version") + 1] == "3.12" and "--only-binary=:all:" in cmd
    assert cmd[cmd.index("-d") - 1] == "--index-url=U" and cmd[-len(VLLM.requirements):] == VLLM.requirements


def _wheel(directory: Path, name: str, version: str, requires: list[str],
           files: dict[str, str] | None = None) -> Path:
    stem = f"{name.replace('-', '_')}-{version}"
    path = directory / f"{stem}-py3-none-any.whl"
    meta = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    meta += [f"Requires-Dist: {r}" for r in requires]
    record = []
    with zipfile.ZipFile(path, "w") as zf:
        for rel, text in {**(files or {}),
                          f"{stem}.dist-info/METADATA": "\n".join(meta) + "\n\nbody\n",
                          f"{stem}.dist-info/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: true\n"
                                                     "Tag: py3-none-any\n"}.items():
            zf.writestr(rel, text)
            record.append(f"{rel},,")
        zf.writestr(f"{stem}.dist-info/RECORD", "\n".join([*record, f"{stem}.dist-info/RECORD,,"]) + "\n")
    return path


def test_closure(tmp_path: Path) -> None:
    pytest.importorskip("packaging")
    _wheel(tmp_path, "pydantic", "2.14.4", ["pydantic-core==2.50.5", "typing-extensions>=4.16.0"])
    _wheel(tmp_path, "pydantic-core", "2.50.5", [])
    _wheel(tmp_path, "typing-extensions", "4.16.0", [])
    _wheel(tmp_path, "vllm", "0.26.0", [
        "torch==2.11.0", "pydantic>=2.12", "flashinfer-python==0.6.14", "six>=1.16; python_version > '3.11'",
        "zentorch==2.11.0.0; extra == 'zen'", "pywin32; sys_platform == 'win32'",
        "armlib; platform_machine == 'aarch64'"])
    wheels = sorted(tmp_path.glob("*.whl"))
    target, left_out = VLLM.target_packages, VLLM.left_out
    report = check_closure(wheels, "3.12", target, left_out)
    assert report.ok, (report.missing, report.wrong_version)
    assert set(report.on_target) == {"torch", "six"} and set(report.left_out) == {"flashinfer-python"}
    assert "six" not in check_closure(wheels, "3.11", target, left_out).on_target  # marker false on 3.11
    assert "armlib" in check_closure(wheels, "3.12", target, left_out, "manylinux_2_28_aarch64").missing
    _wheel(tmp_path, "openai", "3.57.0", ["jiter>=0.16", "pydantic<2"])
    bad = check_closure(sorted(tmp_path.glob("*.whl")), "3.12", target, left_out)
    assert not bad.ok and "jiter" in bad.missing and any("pydantic<2" in w for w in bad.wrong_version)
    assert any(line.startswith("MISSING: jiter") for line in bad.lines(left_out))


def test_strip(tmp_path: Path) -> None:
    site = tmp_path / "site"
    for rel in (*VLLM.required, "vllm/vllm_flash_attn/_vllm_fa2_C.abi3.so", "vllm/vllm-rs",
                "vllm/third_party/deep_gemm/_C.so", "vllm/third_party/pynvml.py", "bin/vllm",
                "vllm/__pycache__/x.pyc"):
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text("x")
    removed = parts.strip_tree(site, VLLM.strip, VLLM.placeholders, VLLM.required)
    assert "vllm/third_party/deep_gemm/" in removed and "bin/" in removed
    assert not (site / "vllm/vllm-rs").exists() and not (site / "vllm/__pycache__").exists()
    assert (site / "vllm/third_party/pynvml.py").exists()
    placeholder = site / "vllm/vllm_flash_attn/_vllm_fa2_C.py"
    assert "Placeholder" in placeholder.read_text() and "TRITON_ATTN" in placeholder.read_text()
    compile(placeholder.read_text(), str(placeholder), "exec")
    (site / VLLM.required[0]).unlink()
    with pytest.raises(FileNotFoundError):
        parts.strip_tree(site, VLLM.strip, VLLM.placeholders, VLLM.required)


def test_plan_parts() -> None:
    sizes = {"big/a.so": 100, "big/b.so": 80, **{f"pkg/{i:02d}.py": 10 for i in range(20)}}
    est = {"big/a.so": 50.0 * MIB, "big/b.so": 40.0 * MIB,
           **{f"pkg/{i:02d}.py": 1.0 * MIB for i in range(20)}}
    plan = parts.plan_parts(sizes, est, 58.0 * MIB)
    assert sorted(f for p in plan for f in p.files) == sorted(sizes)
    assert all(p.estimate <= 58.0 * MIB for p in plan) and len(plan) == 2
    assert plan[0].files[0] == "big/a.so" and plan[1].files[0] == "big/b.so"
    small = [f for p in plan for f in p.files if f.startswith("pkg/")]
    assert small == sorted(small)  # path order kept across parts
    assert [len(p.files) for p in plan] == [1 + 8, 1 + 12]  # 50 + 8, 40 + 12 MiB
    # first fit: a file too big for the first part's rest does not close that part
    tight = parts.plan_parts({"a": 1, "b": 1, "c": 1}, {"a": 50.0 * MIB, "b": 9.0 * MIB, "c": 5.0 * MIB},
                             58.0 * MIB)
    assert [p.files for p in tight] == [["a", "c"], ["b"]]
    with pytest.raises(ValueError):
        parts.plan_parts({"x": 1}, {"x": 60.0 * MIB}, 58.0 * MIB)


def _unpack_one_by_one(made: list[tuple[str, int, int]], out: Path, dest: Path, tmp_path: Path) -> None:
    """Unpacks the parts one at a time, as when each arrives on its own."""
    arrived = tmp_path / "arrived"
    arrived.mkdir()
    for k, (name, _, _) in enumerate(made):
        for old in arrived.glob("*"):
            old.unlink()
        shutil.copy(out / name, arrived / name)
        assert parts.unpack(arrived, dest) == [name]
        assert parts.unpack(arrived, dest) == []  # idempotent
        have, missing = parts.status(dest)
        assert len(have) == k + 1 and len(missing) == len(made) - k - 1


@pytest.mark.skipif(not HAS_TAR_XZ, reason="needs tar and xz")
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
    out, work, dest = tmp_path / "parts", tmp_path / "work", tmp_path / "dest"
    work.mkdir()
    made = parts.pack(site, out, part_mib=0.2, xz_opts=["-1"], work=work, manifest={"profile": "t"})
    assert len(made) >= 3 and all(size <= 0.2 * MIB for _, size, _ in made)
    _unpack_one_by_one(made, out, dest, tmp_path)
    for rel, data in files.items():
        assert (dest / rel).read_bytes() == data
    assert os.access(dest / "pkg0/exe.sh", os.X_OK)
    manifest = parts.read_manifest(dest)
    assert manifest["parts"] == [n for n, _, _ in made] and manifest["files"] == 13
    assert manifest["profile"] == "t"
    assert cli.main(["status", str(dest)]) == 0
    assert cli.main(["status", str(tmp_path / "empty")]) == 1
    one = parts.pack(site, tmp_path / "one", part_mib=0, xz_opts=["-1"], work=work, manifest={})
    assert len(one) == 1  # no size limit: one part


def test_prune(tmp_path: Path) -> None:
    for name, version in (("a", "1.0"), ("a", "0.9"), ("b_c", "2.0"), ("stray", "1")):
        (tmp_path / f"{name}-{version}-py3-none-any.whl").write_bytes(b"")
    removed = build.prune(tmp_path, {"a": "1.0", "b-c": "2.0"})
    assert sorted(removed) == ["a-0.9-py3-none-any.whl", "stray-1-py3-none-any.whl"]
    with pytest.raises(FileNotFoundError):
        build.prune(tmp_path, {"a": "1.0", "b-c": "2.0", "d": "3"})


@pytest.mark.skipif(not HAS_TAR_XZ, reason="needs tar and xz")
@pytest.mark.parametrize("mode", ["tree", "wheels"])
def test_offline_build(tmp_path: Path, mode: str) -> None:
    """The whole build from a local folder of wheels (pip --no-index), then
    unpacking and, in wheels mode, the offline install."""
    pytest.importorskip("packaging")
    index = tmp_path / "index"
    index.mkdir()
    _wheel(index, "alpha", "1.0", ["beta==2.0", "torch>=2"], {"alpha/__init__.py": "X = 1\n",
                                                               "alpha/big.bin": "0" * 5000})
    _wheel(index, "beta", "2.0", [], {"beta.py": "Y = 2\n"})
    _wheel(index, "alpha", "0.5", [], {"alpha/__init__.py": "X = 0\n"})
    profile_dir = tmp_path / "profile"
    profile_dir.mkdir()
    (profile_dir / "reqs.txt").write_text("alpha==1.0\nbeta==2.0\n")
    (profile_dir / "has.txt").write_text("torch==2.11.0\n")
    (profile_dir / "p.ini").write_text(
        f"[target]\npython_version = 3.12\nplatform = manylinux_2_28_x86_64\nrequirements = reqs.txt\n"
        f"target_packages = has.txt\nno_deps = true\nmode = {mode}\n"
        "[strip]\nalpha/big.bin = not needed\n[placeholders]\nalpha/stub.py = nothing here\n"
        "[required]\nalpha/__init__.py\n")
    work = tmp_path / "work"
    stale = work / "p-py3.12/wheels/alpha-0.5-py3-none-any.whl"
    stale.parent.mkdir(parents=True)
    shutil.copy(index / stale.name, stale)
    rc = cli.main(["build", "--profile", str(profile_dir / "p.ini"), "--work", str(work), "--xz-opts", "-1",
                   "--part-size", "1", f"--pip-arg=--find-links={index}", "--pip-arg=--no-index"])
    assert rc == 0 and not stale.exists()
    assert (work / ".gitignore").read_text().splitlines()[-1] == "*"
    dest = tmp_path / "dest"
    assert cli.main(["unpack", str(work / "parts"), str(dest)]) == 0
    assert cli.main(["status", str(dest)]) == 0
    manifest = parts.read_manifest(dest)
    assert manifest["mode"] == mode and manifest["requirements"] == ["alpha==1.0", "beta==2.0"]
    if mode == "tree":
        assert (dest / "alpha/__init__.py").read_text() == "X = 1\n" and (dest / "beta.py").exists()
        assert not (dest / "alpha/big.bin").exists() and (dest / "alpha/stub.py").exists()
        with pytest.raises(ValueError):
            build.install_command(dest, sys.executable)
        assert envcheck.unmet_requirements(dest) == []  # torch is installed here, beta is in dest
        return
    assert sorted(p.name for p in dest.glob("*.whl")) == ["alpha-1.0-py3-none-any.whl",
                                                          "beta-2.0-py3-none-any.whl"]
    target = tmp_path / "installed"
    assert cli.main(["install", str(dest), "--", "--quiet", "--target", str(target)]) == 0
    assert (target / "alpha/big.bin").exists() and (target / "beta.py").exists()
    # the same through the script, from the parts: unpack (already done: skipped) and install
    target2 = tmp_path / "installed2"
    proc = subprocess.run([str(HERE / "unpack.sh"), "--install", str(work / "parts"), str(dest), "--",
                           "--quiet", "--target", str(target2)], capture_output=True, text=True,
                          env={**os.environ, "PYTHON": sys.executable})
    assert proc.returncode == 0, proc.stderr
    assert "already unpacked" in proc.stdout and (target2 / "beta.py").exists()


@pytest.mark.skipif(not HAS_TAR_XZ, reason="needs tar and xz")
def test_offline_build_resolves_dependencies(tmp_path: Path) -> None:
    """Without --no-deps pip resolves the dependencies, and none is pruned."""
    pytest.importorskip("packaging")
    index = tmp_path / "index"
    index.mkdir()
    _wheel(index, "gamma", "1.0", ["beta>=2"], {"gamma.py": ""})
    _wheel(index, "beta", "2.0", [], {"beta.py": ""})
    work = tmp_path / "work"
    assert cli.main(["build", "gamma", "--mode", "wheels", "--work", str(work), "--xz-opts", "-1",
                     f"--pip-arg=--find-links={index}", "--pip-arg=--no-index"]) == 0
    dest = tmp_path / "dest"
    assert parts.unpack(work / "parts", dest) == ["part-00.tar.xz"]
    assert sorted(p.name for p in dest.glob("*.whl")) == ["beta-2.0-py3-none-any.whl",
                                                          "gamma-1.0-py3-none-any.whl"]
    cmd = build.install_command(dest, "py")
    assert "--no-deps" not in cmd and cmd[-1] == "gamma"


def test_build_refuses_unpinned_no_deps(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        build.build(spec.Profile(requirements=["a>=1"], no_deps=True), build.BuildOptions(work=tmp_path))
    with pytest.raises(ValueError):
        build.build(spec.Profile(), build.BuildOptions(work=tmp_path))


def test_inplace_metadata(tmp_path: Path) -> None:
    dist = inplace.write_metadata(REPO, tmp_path / "meta")
    assert dist.name.startswith("vllm_moe_align_plugin-") and dist.name.endswith(".dist-info")
    assert "[vllm.general_plugins]\nmoe_align = vllm_moe_align_plugin:register" in \
        (dist / "entry_points.txt").read_text()
    parsed = inplace._parse_toml_subset((REPO / "pyproject.toml").read_text())["project"]
    name, version, groups = inplace.read_project(REPO)
    import vllm_moe_align_plugin

    # the version has one place, the package's __version__ (pyproject.toml reads it)
    assert "version" not in parsed and version == vllm_moe_align_plugin.__version__
    assert parsed["name"] == name and dist.name == f"vllm_moe_align_plugin-{version}.dist-info"
    assert f"Version: {version}\n" in (dist / "METADATA").read_text()
    assert parsed["entry-points"] == groups


@pytest.mark.parametrize("script", ["unpack.sh", "run.sh"])
def test_shell_drivers_parse_and_explain(script: str) -> None:
    path = HERE / script
    subprocess.run(["bash", "-n", str(path)], check=True)
    proc = subprocess.run([str(path), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and f"tools/wheelhouse/{script}" in proc.stderr
    assert subprocess.run([str(path), "--bogus"], capture_output=True).returncode == 2


def test_unpack_script(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run([str(HERE / "unpack.sh"), str(tmp_path / "none"), str(tmp_path / "dest")],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 1 and "no part-*.tar.xz" in proc.stderr
    assert "(no part unpacked yet)" in proc.stdout
