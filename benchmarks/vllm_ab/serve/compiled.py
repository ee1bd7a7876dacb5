"""What a server compiled and captured, read from its log: the arms must match.

vLLM logs, per process that compiles the model, ``Using cache directory: DIR
for vLLM's torch.compile``; DIR holds ``computation_graph.py``, the Dynamo
graph after vLLM's piecewise split, printed (its ``submod_N`` modules are the
pieces). The engine's config line names ``cudagraph_capture_sizes`` and the
scheduler logs ``max_num_batched_tokens``.

Two arms whose servers compiled the same graph text, into the same number of
pieces, and captured the same sizes run the same model code: the plugin's
function runs inside vLLM's fused-MoE custom op, which Dynamo does not trace,
so it cannot add a graph break or an op to the graph. The cache directories
themselves differ between the arms whenever ``VLLM_PLUGINS`` differs (vLLM
hashes every vLLM environment variable that is not on its ignore list into
the cache key). Then each arm compiles on its own, and the Triton kernels
that Inductor generates and tunes at run time may differ in speed between
the arms: the report says whether every server used one cache folder.
With equal settings one more thing splits the key: a server that finds no
saved AOT artifact of vLLM's compile traces the model itself and logs
``saved AOT compiled function``; its cache key differs from that of every
later server, which loads the artifact (``Directly load AOT compilation``).
``traced_afresh`` spots it, and the driver restarts such a server once, so
that every measured server loads the same artifact and shares one key.
When they share it (the default baseline), the graph file is the first
server's and later servers load its compiled code: the graph check then
shows only that every server used one graph, and the profile's kernel check
(``trace.check_kernels``) shows that each arm ran its own align kernels.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

CACHE_DIR_RE = re.compile(r"Using cache directory: (\S+) for vLLM's torch\.compile")
CAPTURE_RE = re.compile(r"""['"]?cudagraph_capture_sizes['"]?\s*[:=]\s*\[([0-9,\s]*)\]""")
BATCHED_RE = re.compile(r"max_num_batched_tokens=(\d+)")
PIECE_RE = re.compile(r"\bsubmod_(\d+)\b")
AOT_SAVED_RE = re.compile(r"saved AOT compiled function to ")
GRAPH_FILE = "computation_graph.py"


@dataclass(frozen=True)
class CompileInfo:
    """One server's compiled graphs and capture sizes."""

    graph: Optional[str]  # "<sha256 prefix> (<pieces> pieces)" of each graph file, joined; None: none
    capture_sizes: Optional[str]  # "<count> sizes, <min>-<max>"; None: not logged
    max_num_batched_tokens: Optional[int]
    graph_files: tuple[Path, ...] = ()
    cache: Optional[str] = None  # the cache folders' keys (vLLM's hash of config and environment)


def graph_digest(path: Path) -> str:
    """``<12 hex of sha256> (<n> pieces)`` of a printed computation graph."""
    text = path.read_text(errors="replace")
    pieces = len(set(PIECE_RE.findall(text)))
    return f"{hashlib.sha256(text.encode()).hexdigest()[:12]} ({pieces} pieces)"


def read(log_text: str) -> CompileInfo:
    """The compile facts in a server's log (every process of it)."""
    dirs = list(dict.fromkeys(CACHE_DIR_RE.findall(log_text)))
    files = tuple(p for p in (Path(d) / GRAPH_FILE for d in dirs) if p.is_file())
    digests = sorted({graph_digest(p) for p in files})
    sizes = None
    m = CAPTURE_RE.search(log_text)
    if m:
        got = sorted({int(x) for x in m.group(1).replace(" ", "").split(",") if x})
        sizes = f"{len(got)} sizes, {got[0]}-{got[-1]}" if got else "none"
    batched = BATCHED_RE.search(log_text)
    keys = sorted({cache_key(d) for d in dirs})
    return CompileInfo("; ".join(digests) or None, sizes, int(batched.group(1)) if batched else None, files,
                       "; ".join(keys) or None)


def traced_afresh(log_text: str) -> bool:
    """Whether the server traced the model itself and saved vLLM's AOT
    compile artifact (no earlier server had): its compile cache key then
    differs from that of every later server with the same settings."""
    return AOT_SAVED_RE.search(log_text) is not None


def cache_key(cache_dir: str) -> str:
    """The folder under ``torch_compile_cache`` (vLLM's hash of the
    compile-relevant config and environment), else the folder itself."""
    parts = Path(cache_dir).parts
    if "torch_compile_cache" in parts:
        i = parts.index("torch_compile_cache")
        if i + 1 < len(parts):
            return parts[i + 1]
    return cache_dir


def keep_graphs(info: CompileInfo, log_dir: Path, tag: str) -> list[Path]:
    """Copies the server's graph files into the log folder
    (``graph-<tag>[-<i>].py``), so the arms can be diffed later."""
    out = []
    for i, path in enumerate(info.graph_files):
        dest = log_dir / (f"graph-{tag}.py" if len(info.graph_files) == 1 else f"graph-{tag}-{i}.py")
        shutil.copyfile(path, dest)
        out.append(dest)
    return out


def compare(reference: Optional[str], other: Optional[str]) -> Optional[str]:
    """None when there is nothing to compare or the graphs are the same, else the difference."""
    if reference is None or other is None or reference == other:
        return None
    return f"compiled graph {other} differs from the first server's {reference}"
