"""The build and what it leaves in the library (CPU only, no compiler run
except one small g++ object): setup.py finding a CUDA toolkit (CUDA_HOME,
/usr/local/cuda, PATH, the nvidia-cuda-nvcc wheels' layouts), its warning of a
build without CUDA kernels, the build info compiled into the library and the
clear error when the library was made for another torch, and what
``vllm-moe-align info`` says about the library.

Building and checking a whole wheel takes minutes: opt-in with
VLLM_MOE_ALIGN_TEST_WHEEL=1 (``make wheel`` does the same checks).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from types import ModuleType

import pytest
import torch

from tools.wheel import inspect_wheel
from vllm_moe_align_plugin import _ops, binary, cli

ROOT = Path(__file__).resolve().parents[1]


def _has_compiler() -> bool:
    try:
        return subprocess.run(["c++", "--version"], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _load_setup() -> ModuleType:
    """setup.py as a module: its helpers, without running setup()."""
    spec = importlib.util.spec_from_file_location("vllm_moe_align_setup", ROOT / "setup.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


setup_py = _load_setup()


def _toolkit(home: Path, version: str = "13.0.88") -> Path:
    """A fake toolkit: bin/nvcc (answers --version), include/cuda.h."""
    (home / "bin").mkdir(parents=True)
    (home / "include").mkdir()
    (home / "include" / "cuda.h").write_text("")
    nvcc = home / "bin" / "nvcc"
    nvcc.write_text(f"#!/bin/sh\necho 'Cuda compilation tools, release 13.0, V{version}'\n")
    nvcc.chmod(0o755)
    return home


def _find(tmp_path: Path, env: dict | None = None, standard: tuple = (), which=None,
          site_dirs: list | None = None, cuda_major: str | None = "13"):
    return setup_py.find_cuda_toolkit(
        environ=env or {}, standard=standard, which=which or (lambda _: None),
        site_dirs=[] if site_dirs is None else site_dirs, cuda_major=cuda_major)


# --- finding the toolkit -------------------------------------------------------


def test_cuda_home_comes_first(tmp_path: Path) -> None:
    home = _toolkit(tmp_path / "mine")
    other = _toolkit(tmp_path / "usr_local_cuda")
    toolkit, _ = _find(tmp_path, env={"CUDA_HOME": str(home)}, standard=(str(other),))
    assert toolkit == setup_py.Toolkit(str(home), "CUDA_HOME")


def test_cuda_home_without_nvcc_is_not_second_guessed(tmp_path: Path) -> None:
    other = _toolkit(tmp_path / "usr_local_cuda")
    toolkit, tried = _find(tmp_path, env={"CUDA_HOME": str(tmp_path / "empty")},
                           standard=(str(other),))
    assert toolkit is None
    assert tried == [f"CUDA_HOME={tmp_path / 'empty'} (it has no bin/nvcc)"]


def test_standard_location(tmp_path: Path) -> None:
    home = _toolkit(tmp_path / "usr_local_cuda")
    toolkit, tried = _find(tmp_path, standard=(str(tmp_path / "missing"), str(home)))
    assert toolkit is not None and toolkit.home == str(home) and toolkit.found_by == str(home)
    assert tried == ["CUDA_HOME (not set)", f"{tmp_path / 'missing'} (no bin/nvcc)"]


def test_nvcc_on_path_through_a_symlink_and_a_wrapper_script(tmp_path: Path) -> None:
    home = _toolkit(tmp_path / "cuda-13.0")
    (tmp_path / "links").mkdir()
    link = tmp_path / "links" / "nvcc"
    link.symlink_to(home / "bin" / "nvcc")
    toolkit, _ = _find(tmp_path, which=lambda _: str(link))
    assert toolkit == setup_py.Toolkit(str(home), "PATH")
    wrapper = tmp_path / "wrapper" / "bin" / "nvcc"  # like a distribution's /usr/local/bin/nvcc
    wrapper.parent.mkdir(parents=True)
    wrapper.write_text(f'#!/bin/sh\nexec {home}/bin/nvcc "$@"\n')
    toolkit, _ = _find(tmp_path, which=lambda _: str(wrapper))
    assert toolkit == setup_py.Toolkit(str(home), "PATH")


def test_nvcc_on_path_outside_a_toolkit_is_skipped(tmp_path: Path) -> None:
    stray = tmp_path / "stray" / "nvcc"
    stray.parent.mkdir()
    stray.write_text("#!/bin/sh\n")
    toolkit, tried = _find(tmp_path, which=lambda _: str(stray))
    assert toolkit is None and f"PATH ({stray} is not inside a toolkit)" in tried


def test_wheel_layout_of_cuda_13(tmp_path: Path) -> None:
    """nvidia-cuda-nvcc for CUDA 13: nvidia/cu13/{bin/nvcc,include,lib}; the
    folder of torch's CUDA major first."""
    site = tmp_path / "site-packages"
    _toolkit(site / "nvidia" / "cu12")
    home = _toolkit(site / "nvidia" / "cu13")
    toolkit, _ = _find(tmp_path, site_dirs=[str(tmp_path / "empty"), str(site)])
    assert toolkit == setup_py.Toolkit(str(home), "nvidia-cuda-nvcc wheel",
                                       lib_dirs=(str(home / "lib"),))
    toolkit, _ = _find(tmp_path, site_dirs=[str(site)], cuda_major="12")
    assert toolkit is not None and toolkit.home == str(site / "nvidia" / "cu12")


def test_wheel_layout_of_cuda_12(tmp_path: Path) -> None:
    """The older layout: nvidia/cuda_nvcc/bin/nvcc; the runtime's headers and
    library in nvidia/cuda_runtime/, cub/thrust in nvidia/cuda_cccl/."""
    nvidia = tmp_path / "site-packages" / "nvidia"
    home = _toolkit(nvidia / "cuda_nvcc")
    for sub in ("cuda_runtime/include", "cuda_runtime/lib", "cuda_cccl/include"):
        (nvidia / sub).mkdir(parents=True)
    toolkit, _ = _find(tmp_path, site_dirs=[str(tmp_path / "site-packages")], cuda_major="12")
    assert toolkit == setup_py.Toolkit(
        str(home), "nvidia-cuda-nvcc wheel",
        include_dirs=(str(nvidia / "cuda_runtime" / "include"), str(nvidia / "cuda_cccl" / "include")),
        lib_dirs=(str(nvidia / "cuda_runtime" / "lib"),))


def test_wheels_come_after_path(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    _toolkit(site / "nvidia" / "cu13")
    home = _toolkit(tmp_path / "cuda")
    toolkit, _ = _find(tmp_path, which=lambda _: str(home / "bin" / "nvcc"), site_dirs=[str(site)])
    assert toolkit is not None and toolkit.found_by == "PATH"


def test_no_toolkit_says_where_it_looked(tmp_path: Path) -> None:
    toolkit, tried = _find(tmp_path, standard=("/nonexistent/cuda",),
                           site_dirs=[str(tmp_path)])
    assert toolkit is None
    assert tried == ["CUDA_HOME (not set)", "/nonexistent/cuda (no bin/nvcc)", "PATH (no nvcc)",
                     f"nvidia-cuda-nvcc wheels (none in {tmp_path})"]


def test_default_site_dirs_include_this_environment() -> None:
    dirs = setup_py.default_site_dirs()
    assert sysconfig.get_paths()["purelib"] in dirs


def test_nvcc_version(tmp_path: Path) -> None:
    assert setup_py.nvcc_version(str(_toolkit(tmp_path / "cuda", "13.5.37"))) == "13.5.37"
    assert setup_py.nvcc_version(str(tmp_path / "none")) is None


def test_linker_gets_libcudart_so_from_a_wheel(tmp_path: Path) -> None:
    """Wheels ship libcudart.so.13 only; the linker's -lcudart needs libcudart.so."""
    home = _toolkit(tmp_path / "nvidia" / "cu13")
    (home / "lib").mkdir()
    (home / "lib" / "libcudart.so.13").write_text("")
    toolkit = setup_py.Toolkit(str(home), "nvidia-cuda-nvcc wheel", lib_dirs=(str(home / "lib"),))
    shim = setup_py.cudart_link_dir(toolkit, tmp_path / "build")
    assert shim is not None
    assert os.path.realpath(Path(shim) / "libcudart.so") == str(home / "lib" / "libcudart.so.13")
    (home / "lib64").mkdir()
    (home / "lib64" / "libcudart.so").write_text("")
    assert setup_py.cudart_link_dir(toolkit, tmp_path / "build") is None


# --- with or without the CUDA kernels -------------------------------------------


def test_want_cuda(tmp_path: Path) -> None:
    toolkit = setup_py.Toolkit(str(tmp_path), "CUDA_HOME")
    assert setup_py.want_cuda("13.0", toolkit, {}) == (True, None)
    assert setup_py.want_cuda("13.0", None, {}) == (False, setup_py.NO_TOOLKIT)
    assert setup_py.want_cuda(None, toolkit, {}) == (False, "torch is not a CUDA build")
    off = setup_py.want_cuda("13.0", toolkit, {"VLLM_MOE_ALIGN_CUDA": "0"})
    assert off == (False, "VLLM_MOE_ALIGN_CUDA=0 turned them off")
    for env in ({"VLLM_MOE_ALIGN_CUDA": "1"}, {"VLLM_MOE_ALIGN_WHEEL": "1"}):
        with pytest.raises(RuntimeError, match="set CUDA_HOME or install nvidia-cuda-nvcc"):
            setup_py.want_cuda("13.0", None, env)


def test_no_cuda_warning_text() -> None:
    text = setup_py.no_cuda_warning("2.14.0+cu130", "no CUDA toolkit (nvcc) was found", "13")
    lines = text.splitlines()
    assert len(lines) >= 5 and lines[0] == lines[-1] == "=" * 78
    assert "WITHOUT its CUDA kernels" in lines[1]
    flat = " ".join(line.strip() for line in lines)
    assert "the plugin will run vLLM's own function on GPUs; set CUDA_HOME or install " \
           "nvidia-cuda-nvcc" in flat
    assert 'pip install "nvidia-cuda-nvcc==13.*"' in text
    assert "nvidia-cuda-nvcc-cu12" in setup_py.no_cuda_warning("2.5.0+cu124", "x", "12")


@pytest.mark.skipif(torch.version.cuda is None, reason="torch is not a CUDA build")
def test_build_without_toolkit_warns_on_stderr_and_in_the_log(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The extension setup.py would build when no toolkit is found: the CPU
    kernel only, the loud warning on stderr, in the build log and in the file
    the Makefile prints after pip (which hides a build's output)."""
    monkeypatch.setattr(setup_py, "find_cuda_toolkit",
                        lambda **_: (None, ["CUDA_HOME (not set)", "PATH (no nvcc)"]))
    for var in ("VLLM_MOE_ALIGN_CUDA", "VLLM_MOE_ALIGN_WHEEL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(sys, "argv", ["setup.py", "editable_wheel"])
    exts = setup_py._extensions(tmp_path)
    err = capsys.readouterr().err
    assert "WITHOUT its CUDA kernels" in err and "looked at: CUDA_HOME (not set); PATH (no nvcc)" in err
    assert [e.name for e in exts] == ["vllm_moe_align_plugin._C"]
    assert not any(s.endswith(".cu") for s in exts[0].sources)
    assert "WITHOUT its CUDA kernels" in (tmp_path / "vllm-moe-align-build.log").read_text()
    assert (tmp_path / setup_py.NO_CUDA_FILE).read_text().strip() in err
    generated = (tmp_path / "generated" / "build_info.cpp").read_text()
    assert '\\"cuda\\": false' in generated and '\\"command\\": \\"editable_wheel\\"' in generated
    # pip's metadata step (a run of its own) says nothing
    monkeypatch.setattr(sys, "argv", ["setup.py", "dist_info"])
    setup_py._extensions(tmp_path / "meta")
    assert capsys.readouterr().err == ""


def test_wheel_builds_require_the_torch_they_load_with(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VLLM_MOE_ALIGN_WHEEL", raising=False)
    monkeypatch.delenv("VLLM_MOE_ALIGN_ABI", raising=False)
    assert setup_py._requirements() == ["torch>=2.4"]
    monkeypatch.setenv("VLLM_MOE_ALIGN_WHEEL", "1")
    # this torch (2.14) is past the stable ABI's floor: torch >= 2.11, abi3
    assert setup_py._requirements() == ["torch>=2.11"]
    assert setup_py._wheel_options() == {"bdist_wheel": {"py_limited_api": "cp310"}}
    # the C++ ABI pins its torch
    monkeypatch.setenv("VLLM_MOE_ALIGN_ABI", "aten")
    major, minor = torch.__version__.split(".")[:2]
    assert setup_py._requirements() == [f"torch=={major}.{minor}.*"]
    assert setup_py._wheel_options() == {}


@pytest.mark.parametrize("version, asked, abi", [
    ("2.14.0+cu130", "", "stable"), ("2.11.0", "auto", "stable"), ("2.10.1+cu128", "", "aten"),
    ("2.7.1+cu126", "", "aten"), ("2.14.0", "aten", "aten"), ("2.11.0a0+git1234", "", "stable"),
])
def test_frontend_by_torch_version(version: str, asked: str, abi: str) -> None:
    assert setup_py.choose_abi(version, {"VLLM_MOE_ALIGN_ABI": asked}) == abi


def test_stable_frontend_refuses_an_old_torch() -> None:
    with pytest.raises(RuntimeError, match="VLLM_MOE_ALIGN_ABI=stable needs torch >= 2.11"):
        setup_py.choose_abi("2.10.0", {"VLLM_MOE_ALIGN_ABI": "stable"})
    with pytest.raises(RuntimeError, match="use stable or aten"):
        setup_py.choose_abi("2.14.0", {"VLLM_MOE_ALIGN_ABI": "cxx11"})
    assert "older than 2.11" in setup_py.old_torch_note("2.7.1+cu126")
    assert "loads with torch 2.7 only" in setup_py.old_torch_note("2.7.1+cu126")
    assert setup_py._target_version_flag() == "-DTORCH_TARGET_VERSION=0x020b000000000000"


def test_stable_abi_library_explains_an_old_torch() -> None:
    cause = ImportError("undefined symbol: torch_library_impl")
    info = {"torch": "2.14.0+cu130", "abi": "stable", "torch_floor": "2.11", "wheel": True}
    error = binary.explain_load_error(cause, info, running="2.10.0+cu128")
    assert isinstance(error, ImportError) and error.__cause__ is cause
    assert "the plugin's wheel uses PyTorch's stable ABI, which needs torch >= 2.11; torch " \
           "2.10.0+cu128 is older" in str(error)
    # a newer torch than the one it was built with is what the stable ABI is for
    assert binary.explain_load_error(cause, info, running="2.11.0+cu130") is cause
    assert binary.explain_load_error(cause, info, running="2.15.0") is cause


def test_build_command() -> None:
    assert setup_py._build_command(["setup.py", "bdist_wheel", "--dist-dir", "/x"]) == "bdist_wheel"
    assert setup_py._build_command(["setup.py", "-q", "build_ext", "--inplace"]) == \
        "build_ext --inplace"


# --- build info in the library ---------------------------------------------------


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_build_info_round_trip_through_a_compiled_object(tmp_path: Path) -> None:
    info = {"torch": "2.14.0+cu130", "cuda": True, "cuda_archs": ["9.0a", "10.0+PTX"],
            "odd": 'quote " and back\\slash'}
    src = tmp_path / "build_info.cpp"
    src.write_text(setup_py.build_info_source(info))
    if not _has_compiler():
        pytest.skip("no C++ compiler (a wheel's test run hides it)")
    subprocess.run(["c++", "-c", str(src), "-o", str(tmp_path / "build_info.o")], check=True)
    assert binary.read_build_info(str(tmp_path / "build_info.o")) == info
    assert setup_py.BUILD_INFO_MARKER.encode() == binary.BUILD_INFO_MARKER == inspect_wheel.MARKER


def test_read_build_info_of_files_without_it(tmp_path: Path) -> None:
    (tmp_path / "old.so").write_bytes(b"\x7fELF" + b"\0" * 64)
    assert binary.read_build_info(str(tmp_path / "old.so")) is None
    assert binary.read_build_info(str(tmp_path / "missing.so")) is None


def test_the_loaded_library_carries_its_build_info() -> None:
    if not _ops.available():
        pytest.skip(f"the compiled op does not load: {_ops.LOAD_ERROR}")
    info = _ops.build_info()
    assert info is not None, "the library predates build info: rebuild it (make install)"
    if binary.is_stable_abi(info):  # any torch from the floor on
        assert setup_py.torch_release(torch.__version__) >= setup_py.torch_release(
            info["torch_floor"] + ".0")
    else:
        assert info["torch"] == torch.__version__
    assert info["cuda"] == (_ops.has_backend("cuda") or _ops.CUDA_LOAD_ERROR is not None)
    if _ops.has_backend("cuda"):  # (a CPU-only torch does not load the CUDA library)
        assert info["cuda_archs"] == _ops.cuda_archs()


def test_a_library_made_for_another_torch_says_so() -> None:
    cause = ImportError("undefined symbol: _ZN3c104cuda9SetDeviceEi")
    error = binary.explain_load_error(cause, {"torch": "2.9.1+cu128"}, running="2.14.0+cu130")
    assert isinstance(error, ImportError) and error.__cause__ is cause
    text = str(error)
    assert "this build was made for torch 2.9 (2.9.1+cu128)" in text
    assert "rebuild from source against the installed torch" in text
    assert "does not load with torch 2.14.0+cu130" in text and "undefined symbol" in text
    wheel = binary.explain_load_error(cause, {"torch": "2.9.1", "wheel": True}, running="2.14.0")
    assert "the plugin's wheel was made for torch 2.9" in str(wheel)
    # the same torch, or a library without build info: the loader's own error
    assert binary.explain_load_error(cause, {"torch": "2.14.0"}, running="2.14.0") is cause
    assert binary.explain_load_error(cause, None, running="2.14.0") is cause


def _fake_install(tmp_path: Path, built_for: str) -> Path:
    """The package's Python files and a 'library' that does not load but
    carries build info naming ``built_for``."""
    dest = tmp_path / "site"
    shutil.copytree(Path(binary.__file__).parent, dest / "vllm_moe_align_plugin",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    info = json.dumps({"torch": built_for, "cuda": True, "wheel": True, "command": "bdist_wheel"})
    library = dest / "vllm_moe_align_plugin" / ("_C" + sysconfig.get_config_var("EXT_SUFFIX"))
    library.write_bytes(b"not an ELF file\0" + binary.BUILD_INFO_MARKER + info.encode() + b"\0tail")
    return dest


def test_import_and_info_with_a_library_made_for_another_torch(tmp_path: Path) -> None:
    site = _fake_install(tmp_path, "2.9.1+cu128")
    env = {**os.environ, "PYTHONPATH": str(site), "VLLM_PLUGINS": ""}
    probe = ("from vllm_moe_align_plugin import _ops; print(_ops.LOAD_ERROR); "
             "print(_ops.binary_path())")
    out = subprocess.run([sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "this build was made for torch 2.9 (2.9.1+cu128); rebuild from source against the " \
           "installed torch" in out.stdout.replace("the plugin's wheel", "this build")
    assert str(site) in out.stdout
    info = subprocess.run([sys.executable, "-m", "vllm_moe_align_plugin.cli", "info"], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert info.returncode == 1
    lines = info.stdout.splitlines()
    failed = next(x for x in lines if x.startswith("compiled op"))
    assert "FAILED TO LOAD" in failed and "made for torch 2.9" in failed
    assert any(x.split() == ["file", str(next(site.rglob("_C*")))] for x in lines), info.stdout
    built = next(x for x in lines if x.strip().startswith("built for"))
    assert f"torch 2.9.1+cu128 only (its C++ ABI; installed: {torch.__version__})" in built


# --- where the library comes from --------------------------------------------------


def _dist(site: Path, direct_url: dict | None, library: str) -> importlib.metadata.Distribution:
    info = site / "vllm_moe_align_plugin-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: vllm-moe-align-plugin\n"
                                   "Version: 0.1.0\n")
    (info / "RECORD").write_text(f"{library},,\nvllm_moe_align_plugin/__init__.py,,\n")
    for listed in (library, "vllm_moe_align_plugin/__init__.py"):  # Python 3.12 lists existing
        (site / listed).parent.mkdir(parents=True, exist_ok=True)  # files only
        (site / listed).touch()
    if direct_url is not None:
        (info / "direct_url.json").write_text(json.dumps(direct_url))
    return importlib.metadata.PathDistribution(info)


def test_origin_of_an_installed_wheel(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    lib = "vllm_moe_align_plugin/_C.cpython-311-x86_64-linux-gnu.so"
    wheel = {"url": "file:///tmp/x.whl", "archive_info": {}}
    assert cli.binary_origin(str(site / lib), _dist(site, wheel, lib)) == \
        "installed wheel 0.1.0 (file:///tmp/x.whl)"
    index = tmp_path / "index"
    assert cli.binary_origin(str(index / lib), _dist(index, None, lib)) == \
        "installed wheel 0.1.0 (from a package index)"


def test_origin_of_an_editable_install_and_of_an_in_place_build(tmp_path: Path) -> None:
    site, src = tmp_path / "site-packages", tmp_path / "checkout"
    lib = src / "vllm_moe_align_plugin" / "_C.so"
    editable = {"url": src.as_uri(), "dir_info": {"editable": True}}
    dist = _dist(site, editable, "__editable__.vllm_moe_align_plugin-0.1.0.pth")
    assert cli.binary_origin(str(lib), dist) == \
        f"editable install 0.1.0, built in place in {os.path.realpath(src)}"
    other = tmp_path / "other" / "vllm_moe_align_plugin" / "_C.so"
    assert cli.binary_origin(str(other), dist).startswith("in-place build in a source tree, "
                                                        "not the installed")
    local = {"url": src.as_uri(), "dir_info": {}}
    lib_in_site = "vllm_moe_align_plugin/_C.so"
    assert cli.binary_origin(str(tmp_path / "s2" / lib_in_site),
                             _dist(tmp_path / "s2", local, lib_in_site)) == \
        f"installed 0.1.0, built from the source tree {os.path.realpath(src)}"


def test_info_shows_the_binary(capsys: pytest.CaptureFixture[str]) -> None:
    if not _ops.available():
        pytest.skip(f"the compiled op does not load: {_ops.LOAD_ERROR}")
    assert cli.main(["info"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"compiled op           {_ops.binary_path()}" in lines
    origin = next(x for x in lines if x.startswith("  from "))
    assert origin.split(None, 1)[1] == cli.binary_origin()
    built = next(x for x in lines if x.startswith("  built for "))
    info = _ops.build_info()
    if binary.is_stable_abi(info):
        assert f"torch >= 2.11 (stable ABI, Python 3 abi3; built with {info['torch']}; " \
               f"installed: {torch.__version__})" in built
    else:
        assert f"torch {torch.__version__} only (its C++ ABI; the installed one)" in built
    if _ops.has_backend("cuda"):
        assert " ".join(_ops.cuda_archs()) in built


# --- the wheel ------------------------------------------------------------------------


def test_expected_cuda_code_of_an_arch_list() -> None:
    cubins, ptx = inspect_wheel.expected_code("8.0;8.9;9.0a;10.0+PTX")
    assert cubins == {"sm_80", "sm_89", "sm_90a", "sm_100"} and ptx == {"compute_100"}
    assert setup_py.WHEEL_ARCHS == "8.0;8.9;9.0a;10.0+PTX"


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("VLLM_MOE_ALIGN_TEST_WHEEL") != "1",
                    reason="builds a wheel (minutes): VLLM_MOE_ALIGN_TEST_WHEEL=1")
def test_wheel_build_holds_the_library_for_every_arch(tmp_path: Path) -> None:
    if importlib.util.find_spec("build") is None:
        pytest.skip("needs the build package (pip install build; make wheel builds in .venv-build)")
    env = {**os.environ, "VLLM_MOE_ALIGN_WHEEL": "1", "VLLM_MOE_ALIGN_BUILD_BASE": str(tmp_path / "b"),
           "TORCH_CUDA_ARCH_LIST": setup_py.WHEEL_ARCHS}
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir",
                    str(tmp_path / "dist"), str(ROOT)], env=env, check=True, cwd=ROOT,
                   capture_output=True)
    wheels = list((tmp_path / "dist").glob("*.whl"))
    assert len(wheels) == 1
    assert inspect_wheel.inspect(str(wheels[0]), setup_py.WHEEL_ARCHS) == []


# --- the C++-ABI frontend (torch older than the stable ABI's floor) --------------

_ATEN_PROBE = r"""
import sys
# the copy on PYTHONPATH, not an editable install of this checkout
sys.meta_path = [f for f in sys.meta_path if "editable" not in type(f).__module__]
import torch
from vllm_moe_align_plugin import _ops, binary, moe_align_block_size
from vllm_moe_align_plugin.reference import moe_align_block_size_reference as reference

assert _ops.available(), _ops.LOAD_ERROR
info = _ops.build_info()
assert info["abi"] == "aten" and not binary.is_stable_abi(info), info
assert ".abi3." not in _ops.binary_path(), _ops.binary_path()
ids = torch.randint(0, 16, (300, 4), generator=torch.Generator().manual_seed(0))
got, want = moe_align_block_size(ids, 8, 16), reference(ids, 8, 16)
assert all(torch.equal(g, w) for g, w in zip(got, want))
ops = torch.ops.vllm_moe_align
try:  # this frontend raises torch's typed errors from the op itself
    ops.moe_align_block_size(ids.float(), 16, 8, 2000)
except TypeError as exc:
    assert "topk_ids must be an integer tensor" in str(exc)
else:
    raise AssertionError("no TypeError")
assert _ops.CUDA_LIBRARY is None and not _ops.has_backend("cuda")
try:
    _ops.cuda_launch_plan(10, 8, 4, 100)
except NotImplementedError as exc:
    assert "no CUDA kernels" in str(exc)
else:
    raise AssertionError("no NotImplementedError")
print("aten frontend ok")
"""


@pytest.mark.slow
def test_cxx_abi_frontend_builds_and_runs(tmp_path: Path) -> None:
    """The frontend that torch releases older than 2.11 get, built here
    (CPU kernel only, VLLM_MOE_ALIGN_ABI=aten) in a copy of the sources."""
    if not _has_compiler():
        pytest.skip("no C++ compiler (a wheel's test run hides it)")
    src = tmp_path / "src"
    for part in ("csrc", "vllm_moe_align_plugin"):
        shutil.copytree(ROOT / part, src / part,
                        ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    if not (src / "vllm_moe_align_plugin" / "__init__.py").exists():  # tests of an installed wheel
        shutil.copytree(Path(binary.__file__).parent, src / "vllm_moe_align_plugin",
                        dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    shutil.copy(ROOT / "setup.py", src / "setup.py")
    env = {**os.environ, "VLLM_MOE_ALIGN_ABI": "aten", "VLLM_MOE_ALIGN_CUDA": "0",
           "VLLM_MOE_ALIGN_BUILD_BASE": str(tmp_path / "build")}
    build = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=src,
                           env=env, capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stderr[-3000:]
    probe = subprocess.run([sys.executable, "-c", _ATEN_PROBE], cwd=tmp_path, capture_output=True,
                           text=True, timeout=300,
                           env={**os.environ, "PYTHONPATH": str(src), "VLLM_PLUGINS": ""})
    assert probe.returncode == 0, probe.stderr[-3000:]
    assert "aten frontend ok" in probe.stdout


# --- tools/wheel/sass.py: the kernels' machine code per kernel ---------------------

_SASS = """
Fatbin elf code:
================
arch = sm_90
code version = [1,8]
host = linux

        code for sm_90
                Function : _ZN2ns1kILi1EEEvPKi
        .headerflags    @"EF_CUDA_VIRTUAL_SM(EF_CUDA_SM90)"
        /*0000*/                   LDC R1, c[0x0][0x28] ;                        /* 0x00000a00ff017b82 */
        /*0010*/                   EXIT ;                                        /* 0x000000000000794d */

Fatbin elf code:
arch = sm_90a
                Function : _ZN2ns1kILi1EEEvPKi
        /*0000*/                   S2R R0, SR_CgaCtaId ;                         /* 0x0000000000007919 */
                                                                                 /* 0x000e240000008800 */
        /*0010*/              @!P0 BSSY B0, 0x60 ;                               /* 0x0000004000007945 */
        /*0020*/                   ATOMS.POPC.INC.32 RZ, [R3+URZ] ;              /* 0x000000ff03ff738c */
        /*0030*/                   BAR.SYNC.DEFER_BLOCKING 0x0 ;                 /* 0x0000000000007b1d */
        /*0040*/                   EXIT ;                                        /* 0x000000000000794d */
                Function : _ZN2ns1kILi2EEEvPKi
        /*0000*/                   EXIT ;                                        /* 0x000000000000794d */

Fatbin elf code:
arch = sm_90a
                Function : _ZN2ns1kILi1EEEvPKi
        /*0000*/                   NOP ;                                         /* 0x0000000000007918 */
"""


def test_sass_reads_one_arch_and_counts_what_a_kernel_waits_on() -> None:
    from tools.wheel import sass

    code = sass.parse(_SASS, "sm_90a")
    # the sm_90 cubin left out; a function in a second sm_90a cubin kept once
    assert code == {
        "_ZN2ns1kILi1EEEvPKi": ["S2R R0, SR_CgaCtaId", "@!P0 BSSY B0, 0x60",
                                "ATOMS.POPC.INC.32 RZ, [R3+URZ]", "BAR.SYNC.DEFER_BLOCKING 0x0",
                                "EXIT"],
        "_ZN2ns1kILi2EEEvPKi": ["EXIT"],
    }
    columns = ["instructions"] + [c for c, _ in sass.COLUMNS]
    counted = dict(zip(columns, sass.counts(code["_ZN2ns1kILi1EEEvPKi"])))
    assert counted == {"instructions": 5, "BAR": 1, "ATOMS": 1, "SHFL": 0, "VOTE": 0, "LDG": 0,
                       "STG": 0, "BSSY": 1, "CgaCtaId": 1}
    # no arch: the first cubin's
    assert sass.parse(_SASS)["_ZN2ns1kILi1EEEvPKi"] == ["LDC R1, c[0x0][0x28]", "EXIT"]


def test_sass_short_names() -> None:
    from tools.wheel import sass

    demangled = ("void vllm_moe_align::(anonymous namespace)::tiny_kernel<int, 1>(int const*, "
                 "vllm_moe_align::(anonymous namespace)::Params)")
    assert sass.short_name("_Z...", demangled) == "tiny_kernel<int, 1>"
    assert sass.short_name("_Z...", "vllm_moe_align::(anonymous namespace)::scan_tiles_kernel("
                           "vllm_moe_align::(anonymous namespace)::Params)") == "scan_tiles_kernel"
    assert sass.short_name("_ZN2ns1kE") == "_ZN2ns1kE"  # without c++filt: the mangled name


def test_sass_table_marks_changed_kernels() -> None:
    from tools.wheel import sass

    a = {"k<1>": ["ATOMS.ADD RZ, [R1], R2", "EXIT"], "k<2>": ["EXIT"]}
    b = {"k<1>": ["EXIT"], "k<2>": ["EXIT"]}
    text, changed = sass.table([a, b], None)
    assert changed
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines()[2:]}
    assert rows["k<1>"].endswith("| changed |") and "| 2 -> 1 |" in rows["k<1>"]
    assert rows["k<2>"].endswith("| same |")
    assert sass.table([a, a], "k<2>") == ("| kernel | instructions | BAR | ATOMS | SHFL | VOTE | LDG | "
                                          "STG | BSSY | CgaCtaId |  |\n|---|---|---|---|---|---|---|"
                                          "---|---|---|---|\n| k<2> | 1 | 0 | 0 | 0 | 0 | 0 | 0 | 0 "
                                          "| 0 | same |", False)


def test_sass_finds_the_cuda_library_in_a_wheel(tmp_path: Path) -> None:
    import zipfile

    from tools.wheel import sass

    wheel = tmp_path / "w.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("other/_C_cuda.abi3.so", b"not the plugin's")
        z.writestr("vllm_moe_align_plugin/_C.abi3.so", b"cpu")
        z.writestr("vllm_moe_align_plugin/_C_cuda.abi3.so", b"cuda")
    found = Path(sass.cuda_library(str(wheel), str(tmp_path / "x")))
    assert found.read_bytes() == b"cuda" and found.parent.name == "vllm_moe_align_plugin"
    assert sass.cuda_library("lib/_C_cuda.abi3.so", str(tmp_path)) == "lib/_C_cuda.abi3.so"
    cpu_only = tmp_path / "cpu.whl"
    with zipfile.ZipFile(cpu_only, "w") as z:
        z.writestr("vllm_moe_align_plugin/_C.abi3.so", b"cpu")
    with pytest.raises(SystemExit, match="no _C_cuda library"):
        sass.cuda_library(str(cpu_only), str(tmp_path / "y"))


def test_sass_of_the_built_cuda_library() -> None:
    """The CUDA library this checkout built (the CUDA kernels' sm_90a cubin,
    read with cuobjdump): every kernel found, each identical to itself."""
    from tools.wheel import sass

    cuobjdump = inspect_wheel.find_cuobjdump()
    if _ops.CUDA_LIBRARY is None or cuobjdump is None:
        pytest.skip("needs the CUDA library built and a cuobjdump (Triton bundles one)")
    if "sm_90a" not in inspect_wheel.cuda_code(cuobjdump, _ops.CUDA_LIBRARY)[0]:
        pytest.skip("the CUDA library has no sm_90a cubin")
    code = sass.kernels(cuobjdump, _ops.CUDA_LIBRARY, "sm_90a")
    for name in ("tiny_kernel<int, 1>", "tiny_kernel<long, 2>", "spread_kernel<int, 1>",
                 "count_tiles_kernel<int>", "scatter_tiles_kernel<int, true>", "scan_tiles_kernel"):
        assert len(code.get(name, [])) > 20, (name, sorted(code))
    assert sass.main([_ops.CUDA_LIBRARY, _ops.CUDA_LIBRARY]) == 0
