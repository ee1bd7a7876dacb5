"""A stand-in for vLLM's ``serve`` and ``bench serve`` commands, for CPU tests of the harness.

Standard library and ``fake_trace`` (beside it) only; run as
``python vllm_serve_standin.py serve ...`` or ``python vllm_serve_standin.py
bench serve ...``, or through ``write_package``: a
package named ``vllm`` whose ``entrypoints/cli/main.py`` runs this file, so
the harness's commands reach it unchanged. On the outside it behaves like the real thing:

- ``serve``: the options the harness passes; per ``--data-parallel-size``
  rank an "engine core" child and, for ``--tensor-parallel-size`` N > 1, N
  "worker" children, every process logging
  through the ``VLLM_LOGGING_PREFIX`` format and, when the plugin is allowed
  (``VLLM_PLUGINS`` names ``moe_align``, ``VLLM_MOE_ALIGN_DISABLE`` unset),
  the plugin's " on for vLLM " line; HTTP: ``/health``, ``/v1/models``,
  ``/v1/completions`` (token-id or text prompts, streaming SSE or not,
  ``return_token_ids``), ``/tokenize``, ``/start_profile`` and
  ``/stop_profile`` (one small trace per worker, with the arm's align kernel),
  ``/metrics`` (the Prometheus series ``engine_metrics`` reads, in the text
  format of vLLM's server: each request's token gaps, one step a token).
  Greedy tokens depend on the prompt only, unless ``STANDIN_DIFF`` is set in a
  plugin server; ``STANDIN_MAIN_ONLY`` keeps the plugin line out of the
  children. ``STANDIN_SPEEDUP`` (default 1.0) divides the plugin arm's
  per-token delay. It logs the compile lines of a real server
  (``log_compile``: the first server of a work folder traces afresh and
  gets another cache key); ``STANDIN_GRAPH_DIFF`` gives a plugin server
  another graph.
- ``bench serve``: the options the harness passes (also as
  ``vllm.benchmarks.serve.add_cli_args`` and ``main``, what the long-lived
  load generator imports); sends the requests
  (``--max-concurrency`` threads) and writes a result JSON with the keys the
  real client writes (``results`` reads them). ``STANDIN_BENCH_FAIL=<c>``
  makes the load at concurrency c fail, ``STANDIN_BENCH_SLEEP`` delays every
  load by that many seconds.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from fake_trace import step_trace

VERSION = "0.26.0"
PLUGIN_ON = ("moe_align" in os.environ.get("VLLM_PLUGINS", "moe_align").split(",")
             and not os.environ.get("VLLM_MOE_ALIGN_DISABLE"))
LOG = logging.getLogger("vllm")


def setup_logging(plugin_line: bool = True) -> None:
    fmt = os.environ.get("VLLM_LOGGING_PREFIX", "") + "%(levelname)s %(asctime)s [%(filename)s] %(message)s"
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter(fmt))
    LOG.addHandler(handler)
    LOG.setLevel(logging.INFO)
    LOG.propagate = False
    if PLUGIN_ON and plugin_line:
        pdl = "; programmatic dependent launch on" if os.environ.get("VLLM_MOE_ALIGN_PDL") == "1" \
            and not os.environ.get("STANDIN_NO_PDL") else ""
        LOG.info("vllm-moe-align-plugin 0.1.0 on for vLLM %s (vllm 0.17-0.30 contract): kernels: "
                 "CPU, CUDA (9.0a%s)", VERSION, pdl)
    elif "moe_align" in os.environ.get("VLLM_PLUGINS", "moe_align").split(","):
        LOG.info("vllm-moe-align-plugin disabled by VLLM_MOE_ALIGN_DISABLE")


def child_process(role: str) -> None:
    """An engine core or worker: logs, then sleeps until its group is killed."""
    setup_logging(plugin_line=not os.environ.get("STANDIN_MAIN_ONLY"))
    LOG.info("stand-in %s started", role)
    time.sleep(3600)


def greedy(prompt: list[int], n: int, vocab: int) -> list[int]:
    shift = 1 if PLUGIN_ON and os.environ.get("STANDIN_DIFF") else 0
    return [(sum(prompt) * 31 + 7 * k + shift) % vocab for k in range(n)]


def trace_events(align: str) -> list[dict[str, Any]]:
    """One prefill and two decode steps, each with an align and a GEMM kernel."""
    steps = ["execute_context_2(300)_generation_0(0)"] + ["execute_context_0(0)_generation_2(2)"] * 2
    return step_trace(align, steps, 6.0, 18.0, 40.0)


def log_compile(model: str, sizes: list[int]) -> None:
    """The compile lines of a real server's log: a printed computation graph
    in a cache folder per plugin switch (with one more piece in a plugin
    server when ``STANDIN_GRAPH_DIFF`` is set), the capture sizes, the
    scheduler's token budget."""
    extra = PLUGIN_ON and bool(os.environ.get("STANDIN_GRAPH_DIFF"))
    # like vLLM: the key hashes VLLM_PLUGINS, not the plugin's own switch
    key = "k" + str(sum(map(ord, os.environ.get("VLLM_PLUGINS", "-")))) + ("x" if extra else "")
    root = os.path.join(os.path.dirname(os.path.abspath(model)), "torch_compile_cache")
    # like vLLM 0.26: the first server traces and saves the AOT artifact, under another key
    aot = os.path.join(root, "torch_aot_compile", "a1")
    fresh = not os.path.isdir(aot)
    cache = os.path.join(root, key + ("f" if fresh else ""), "rank_0_0", "backbone")
    os.makedirs(cache, exist_ok=True)
    pieces = 3 if extra else 2
    graph = os.path.join(cache, "computation_graph.py")
    if not os.path.exists(graph):
        with open(graph, "w") as f:
            f.write("".join(f"class submod_{i}(torch.nn.Module):\n    pass\n" for i in range(pieces)))
    LOG.info("Using cache directory: %s for vLLM's torch.compile", cache)
    if fresh:
        os.makedirs(aot)
        LOG.info("saved AOT compiled function to %s", aot)
    else:
        LOG.info("Directly load AOT compilation from path %s", aot)
    LOG.info("Initializing a V1 LLM engine (v%s) with config: compilation_config={'cudagraph_capture_sizes': "
             "%s, 'mode': 3}", VERSION, sorted(sizes, reverse=True))
    LOG.info("Chunked prefill is enabled with max_num_batched_tokens=8192.")


class Metrics:
    """The server's Prometheus series that the harness reads: a request of
    n tokens taking t seconds adds n - 1 gaps of t / n and n steps."""

    BOUNDS = ("0.01", "0.025", "+Inf")

    def __init__(self, model: str) -> None:
        self.labels = f'engine="0",model_name="{model}"'
        self.lock = threading.Lock()
        self.gaps = self.gap_sum = self.tokens = 0.0
        self.buckets = dict.fromkeys(self.BOUNDS, 0.0)
        self.created = time.time()

    def request(self, n: int, seconds: float) -> None:
        gap = seconds / max(n, 1)
        with self.lock:
            self.gaps += n - 1
            self.gap_sum += gap * (n - 1)
            self.tokens += n
            for bound in self.BOUNDS:
                if gap <= float(bound):
                    self.buckets[bound] += n - 1

    def text(self) -> str:
        itl, steps = "vllm:inter_token_latency_seconds", "vllm:iteration_tokens_total"
        with self.lock:
            lines = [f"# HELP {itl} Histogram of inter-token latency in seconds.", f"# TYPE {itl} histogram"]
            lines += [f'{itl}_bucket{{{self.labels},le="{b}"}} {v}' for b, v in self.buckets.items()]
            lines += [f"{itl}_count{{{self.labels}}} {self.gaps}",
                      f"{itl}_sum{{{self.labels}}} {self.gap_sum}",
                      f"{itl}_created{{{self.labels}}} {self.created}",
                      f"# TYPE {steps} histogram", f"{steps}_count{{{self.labels}}} {self.tokens}",
                      f"{steps}_sum{{{self.labels}}} {self.tokens}",
                      "# TYPE vllm:generation_tokens counter",
                      f"vllm:generation_tokens_total{{{self.labels}}} {self.tokens}",
                      "# TYPE vllm:num_preemptions counter",
                      f"vllm:num_preemptions_total{{{self.labels}}} 0.0"]
        return "\n".join(lines) + "\n"


def serve(argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    for opt in ("--served-model-name", "--host", "--port", "--load-format", "--tensor-parallel-size",
                "--data-parallel-size", "--distributed-executor-backend", "--gpu-memory-utilization",
                "--profiler-config"):
        ap.add_argument(opt)
    ap.add_argument("--enable-expert-parallel", action="store_true")
    ap.add_argument("--disable-custom-all-reduce", action="store_true")
    ap.add_argument("--cudagraph-capture-sizes", nargs="+", type=int)
    args = ap.parse_args(argv)
    setup_logging()
    LOG.info("vLLM server version %s, serving model %s", VERSION, args.model)
    tp, dp = int(args.tensor_parallel_size or 1), int(args.data_parallel_size or 1)
    vocab = json.load(open(os.path.join(args.model, "config.json")))["vocab_size"]
    roles = [r for d in range(dp) for r in [f"engine core {d}"]
             + ([f"worker {d}.{i}" for i in range(tp)] if tp > 1 else [])]
    for role in roles:
        subprocess.Popen([sys.executable, os.path.abspath(__file__), "--child", role])
    log_compile(args.model, args.cudagraph_capture_sizes or [1, 2, 4, 8])
    profiler = json.loads(args.profiler_config) if args.profiler_config else None
    delay = 0.002 / (float(os.environ.get("STANDIN_SPEEDUP", "1.0")) if PLUGIN_ON else 1.0)
    time.sleep(float(os.environ.get("STANDIN_START_S", "0.5")))
    metrics = Metrics(args.served_model_name)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt: str, *a: Any) -> None:
            pass

        def send(self, code: int, body: Any = None) -> None:
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/health":
                self.send(200)
            elif self.path == "/v1/models":
                self.send(200, {"object": "list", "data": [{"id": args.served_model_name,
                                                           "root": args.model}]})
            elif self.path == "/metrics":
                data = metrics.text().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            else:
                self.send(404, {"error": "not found"})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            if self.path == "/tokenize":
                self.send(200, {"tokens": [int(w[1:]) for w in str(body["prompt"]).split()]})
            elif self.path in ("/start_profile", "/stop_profile"):
                if profiler is None:
                    self.send(404, {"error": "profiler off"})
                    return
                if self.path == "/stop_profile":
                    os.makedirs(profiler["torch_profiler_dir"], exist_ok=True)
                    align = "void vllm_moe_align::tiny_kernel<int>(int const*)" if PLUGIN_ON \
                        else "void vllm::moe::moe_align_block_size_kernel<int>(int const*)"
                    for rank in range(tp * dp):
                        path = os.path.join(profiler["torch_profiler_dir"],
                                            f"rank{rank}.{time.time_ns()}.pt.trace.json.gz")
                        with gzip.open(path, "wt") as f:
                            json.dump({"traceEvents": trace_events(align)}, f)
                self.send(200)
            elif self.path == "/v1/completions":
                self.complete(body)
            else:
                self.send(404, {"error": "not found"})

        def complete(self, body: dict[str, Any]) -> None:
            prompt = body["prompt"]
            prompts = prompt if isinstance(prompt, list) and prompt and isinstance(prompt[0], list) \
                else [prompt]
            prompts = [[int(w[1:]) for w in p.split()] if isinstance(p, str) else p for p in prompts]
            n = int(body["max_tokens"])
            outs = [greedy(p, n, vocab) for p in prompts]
            t0 = time.monotonic()
            if not body.get("stream"):
                time.sleep(delay * n)
                metrics.request(n, time.monotonic() - t0)
                choices = [{"index": i, "text": " ".join(f"w{t}" for t in o), "finish_reason": "length",
                            "token_ids": o if body.get("return_token_ids") else None}
                           for i, o in enumerate(outs)]
                self.send(200, {"object": "text_completion", "model": args.served_model_name,
                                "choices": choices})
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            time.sleep(delay * 5)
            for t in outs[0]:
                chunk = {"choices": [{"index": 0, "text": f" w{t}"}]}
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
                time.sleep(delay)
            metrics.request(n, time.monotonic() - t0)
            usage = {"prompt_tokens": len(prompts[0]), "completion_tokens": n}
            last = json.dumps({"choices": [], "usage": usage})
            self.wfile.write(f"data: {last}\n\ndata: [DONE]\n\n".encode())

    server = ThreadingHTTPServer((args.host or "127.0.0.1", int(args.port or 8000)), Handler)
    LOG.info("stand-in server ready on port %s", args.port)
    server.serve_forever()


def add_bench_args(ap: argparse.ArgumentParser) -> None:
    """The options of ``bench serve`` that the harness passes."""
    for opt in ("--backend", "--endpoint", "--host", "--port", "--model", "--served-model-name",
                "--tokenizer", "--dataset-name", "--random-input-len", "--random-output-len",
                "--random-range-ratio", "--num-prompts", "--max-concurrency", "--request-rate",
                "--seed", "--temperature", "--percentile-metrics", "--metric-percentiles",
                "--result-dir", "--result-filename"):
        ap.add_argument(opt)
    for flag in ("--ignore-eos", "--disable-tqdm", "--save-result"):
        ap.add_argument(flag, action="store_true")
    ap.add_argument("--metadata", nargs="*", default=[])


def run_bench(args: argparse.Namespace) -> None:
    """One load: the requests, then the result JSON."""
    if os.environ.get("STANDIN_BENCH_FAIL") == args.max_concurrency:
        raise RuntimeError(f"stand-in bench: asked to fail at concurrency {args.max_concurrency}")
    time.sleep(float(os.environ.get("STANDIN_BENCH_SLEEP", "0")))
    n, c, out_len = int(args.num_prompts), int(args.max_concurrency), int(args.random_output_len)
    url = f"http://{args.host}:{args.port}{args.endpoint}"
    ttfts, tpots, lock = [], [], threading.Lock()
    todo = list(range(n))

    def worker() -> None:
        while True:
            with lock:
                if not todo:
                    return
                i = todo.pop()
            prompt = [(int(args.seed) * 7 + i * 13 + k) % 1000 + 3 for k in range(int(args.random_input_len))]
            payload = {"model": args.served_model_name, "prompt": prompt, "max_tokens": out_len,
                       "stream": False}
            req = urllib.request.Request(url, json.dumps(payload).encode(),
                                         {"Content-Type": "application/json"})
            t0 = time.perf_counter()
            urllib.request.urlopen(req, timeout=60).read()
            took = time.perf_counter() - t0
            with lock:
                ttfts.append(took / out_len * 5)
                tpots.append(took / out_len)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(min(c, n))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    duration = time.perf_counter() - t0
    ms = sorted(x * 1000 for x in ttfts), sorted(x * 1000 for x in tpots)
    result = {"backend": args.backend, "model_id": args.model, "num_prompts": n,
              "max_concurrency": c, "request_rate": "inf", "duration": duration,
              "completed": len(ttfts), "failed": n - len(ttfts),
              "total_input_tokens": n * int(args.random_input_len),
              "total_output_tokens": len(ttfts) * out_len, "request_throughput": len(ttfts) / duration,
              "output_throughput": len(ttfts) * out_len / duration,
              "total_token_throughput": len(ttfts) * (out_len + int(args.random_input_len)) / duration}
    # not streamed: every gap between two of a request's tokens is its TPOT
    for name, vals in (("ttft", ms[0]), ("tpot", ms[1]), ("itl", ms[1])):
        result[f"mean_{name}_ms"] = sum(vals) / len(vals)
        result[f"median_{name}_ms"] = vals[len(vals) // 2]
        result[f"p99_{name}_ms"] = vals[-1]
    result.update(dict(kv.split("=", 1) for kv in args.metadata))
    with open(os.path.join(args.result_dir, args.result_filename), "w") as f:
        json.dump(result, f)
    print(f"stand-in bench: {len(ttfts)} requests in {duration:.2f} s (process {os.getpid()})")


def bench(argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    add_bench_args(ap)
    run_bench(ap.parse_args(argv))


def write_package(dest: Path) -> Path:
    """Writes a package ``vllm`` into ``dest`` whose ``vllm.entrypoints.cli.main``
    runs this file (what the harness starts); returns ``dest``, the folder to
    put first on PYTHONPATH."""
    cli = dest / "vllm" / "entrypoints" / "cli"
    cli.mkdir(parents=True, exist_ok=True)
    for folder in (cli, cli.parent, cli.parent.parent):
        (folder / "__init__.py").write_text("")
    here = str(Path(__file__).resolve())
    # run_path does not put the file's folder on sys.path; its fake_trace import needs it
    prologue = f"import runpy, sys\nsys.path.insert(0, {str(Path(here).parent)!r})\n"
    (cli / "main.py").write_text(prologue + f"runpy.run_path({here!r}, run_name='__main__')\n")
    # what the long-lived load generator (bench_worker) imports
    for sub in ("benchmarks", "utils"):
        (dest / "vllm" / sub).mkdir(exist_ok=True)
        (dest / "vllm" / sub / "__init__.py").write_text("")
    (dest / "vllm" / "benchmarks" / "serve.py").write_text(
        prologue + f"_standin = runpy.run_path({here!r}, run_name='standin')\n"
        "add_cli_args, main = _standin['add_bench_args'], _standin['run_bench']\n")
    (dest / "vllm" / "utils" / "argparse_utils.py").write_text(
        "from argparse import ArgumentParser as FlexibleArgumentParser  # noqa: F401\n")
    return dest


def main(argv: list[str]) -> None:
    if argv[:1] == ["--child"]:
        child_process(argv[1])
    elif argv[:1] == ["serve"]:
        serve(argv[1:])
    elif argv[:2] == ["bench", "serve"]:
        bench(argv[2:])
    else:
        raise SystemExit(f"stand-in vLLM: unsupported command {argv[:2]}")


if __name__ == "__main__":
    main(sys.argv[1:])
