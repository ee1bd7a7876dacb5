"""The offline load's report: one row per (model, variant) as markdown, CSV
(``COLUMNS``) and a bar chart; cells and the CSV writer are the shared
``benchmarks.vllm_ab.report``'s."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

from benchmarks.vllm_ab.environment import VARIANTS
from benchmarks.vllm_ab.logs import PluginLog
from benchmarks.vllm_ab.report import fmt, pyplot
from vllm_moe_align_plugin.bench import markdown_table

COLUMNS = (
    "model", "variant", "tp", "ep", "eager", "prompts", "prompt_tokens", "max_tokens",
    "engine_prefill_ms", "engine_decode_ms_per_step", "wall_prefill_ms",
    "wall_decode_ms_per_step", "prefill_align_us", "decode_align_us", "prefill_align_share",
    "decode_align_share", "prefill_align_launches", "decode_align_launches",
    "decode_moe_gemm_launches", "prefill_step_tokens", "decode_step_tokens", "plugin_processes",
    "tokens_identical", "init_s",
)
# (column, title) of the chart's panels
PANELS = (("prefill_align_us", "align us / prefill step"),
          ("decode_align_us", "align us / decode step"),
          ("engine_prefill_ms", "prefill ms (engine)"),
          ("engine_decode_ms_per_step", "decode ms / step (engine)"))
ALIGN_NOTE = (
    "align: GPU time of the align calls inside each engine step's `execute_*` annotation, mean "
    "over steps and workers: the plugin's kernels (`vllm_moe_align::*`); vLLM's op kernels "
    "(`moe_align_block_size*` / `count_and_sort_expert_tokens*`) with the fills and the "
    "`expert_map[expert_ids]` gather its function launches next to them on the same stream "
    "(expert parallel); share: of all GPU time in those steps; tokens/step: from the annotation "
    "(context + generation), mean over those steps (routes per align call = tokens x top-k). "
    "Engine times: medians of vLLM's per-request metrics (first token - scheduled; (last - first "
    "token) / (tokens - 1)); wall: `generate(max_tokens=1)` and `(full - that) / (max_tokens - 1)`.")


def make_row(result: dict[str, Any], traces: dict[str, Any], log: PluginLog,
             identical: Optional[bool]) -> dict[str, Any]:
    """One CSV/markdown row from a run's result, trace summary and log."""
    spec = result["spec"]

    def share(kind: str) -> Optional[float]:
        a, k = traces.get(f"{kind}_align_us"), traces.get(f"{kind}_kernel_us")
        return a / k if a is not None and k else None

    return {
        "model": spec["model"], "variant": spec["variant"], "tp": spec["tp"], "ep": spec["ep"],
        "eager": spec["enforce_eager"], "prompts": spec["num_prompts"],
        "prompt_tokens": result["prompt_tokens"], "max_tokens": spec["max_tokens"],
        "engine_prefill_ms": result.get("engine_prefill_ms"),
        "engine_decode_ms_per_step": result.get("engine_decode_ms_per_step"),
        "wall_prefill_ms": result["wall_prefill_ms"],
        "wall_decode_ms_per_step": result["wall_decode_ms_per_step"],
        "prefill_align_us": traces.get("prefill_align_us"),
        "decode_align_us": traces.get("decode_align_us"),
        "prefill_align_share": share("prefill"), "decode_align_share": share("decode"),
        "prefill_align_launches": traces.get("prefill_align_launches"),
        "decode_align_launches": traces.get("decode_align_launches"),
        "decode_moe_gemm_launches": traces.get("decode_moe_gemm_launches"),
        "prefill_step_tokens": traces.get("prefill_tokens"),
        "decode_step_tokens": traces.get("decode_tokens"),
        "plugin_processes": log.summary, "tokens_identical": identical,
        "init_s": result.get("init_s"),
    }


def arrow(base: dict[str, Any], plugin: dict[str, Any], key: str, digits: int = 1) -> str:
    """``vLLM -> plugin (ratio x)`` of one column."""
    a, b = base.get(key), plugin.get(key)
    ratio = f" ({a / b:.2f}x)" if a and b else ""
    return f"{fmt(a, digits)} -> {fmt(b, digits)}{ratio}"


def markdown(rows: list[dict[str, Any]], header: str) -> str:
    """The report: the per-run table and, per model, plugin vs vLLM."""
    runs = markdown_table(
        ["model", "run", "prefill ms (engine / wall)", "decode ms/step (engine / wall)",
         "align us/prefill step", "align us/decode step", "align share prefill / decode",
         "tokens/step prefill / decode", "plugin line / processes", "tokens identical"],
        [[r["model"], r["variant"],
          f"{fmt(r['engine_prefill_ms'])} / {fmt(r['wall_prefill_ms'])}",
          f"{fmt(r['engine_decode_ms_per_step'], 3)} / {fmt(r['wall_decode_ms_per_step'], 3)}",
          fmt(r["prefill_align_us"], 1), fmt(r["decode_align_us"], 1),
          f"{fmt(r['prefill_align_share'], -1)} / {fmt(r['decode_align_share'], -1)}",
          f"{fmt(r.get('prefill_step_tokens'), 0)} / {fmt(r.get('decode_step_tokens'), 0)}",
          r["plugin_processes"], fmt(r["tokens_identical"])] for r in rows])
    pairs = []
    for model in dict.fromkeys(r["model"] for r in rows):
        by = {r["variant"]: r for r in rows if r["model"] == model}
        if set(by) != set(VARIANTS):
            continue
        v, p = by["vllm"], by["plugin"]
        pairs.append([model, arrow(v, p, "prefill_align_us"), arrow(v, p, "decode_align_us"),
                      arrow(v, p, "engine_prefill_ms", 2),
                      arrow(v, p, "engine_decode_ms_per_step", 3)])
    compared = markdown_table(
        ["model", "align us/prefill step: vLLM -> plugin", "align us/decode step: vLLM -> plugin",
         "prefill ms (engine)", "decode ms/step (engine)"], pairs)
    return "\n".join([header, "", runs, "", compared, "", ALIGN_NOTE]) + "\n"


def write_png(rows: list[dict[str, Any]], path: Path, title: str,
              panels: Sequence[tuple[str, str]] = PANELS) -> bool:
    """Bars per model, vLLM vs plugin, one panel per (column, title) of
    ``panels``. False when matplotlib is missing."""
    plt = pyplot()
    if plt is None:
        return False
    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6), squeeze=False)
    width = 0.38
    for ax, (key, label) in zip(axes[0], panels):
        for j, variant in enumerate(VARIANTS):
            vals = []
            for m in models:
                r = next((x for x in rows if x["model"] == m and x["variant"] == variant), None)
                vals.append(r.get(key) or 0.0 if r else 0.0)
            xs = [i + (j - 0.5) * width for i in range(len(models))]
            ax.bar(xs, vals, width, label="vLLM" if variant == "vllm" else "plugin")
        ax.set_xticks(range(len(models)))
        ax.set_xticklabels(models)
        ax.set_title(label, fontsize=9)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
