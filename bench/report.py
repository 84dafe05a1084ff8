"""bench/RESULTS.md and bench/ratios.png from the figures bench/run.py collected."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # run.py imports this module; the reverse import is for the type checker only
    from run import Result

# The targets of issue 5's "done means".
NATIVE_TARGET = 1.0      # onnx-emit time / onnxruntime time, single thread
WASM_TARGET = 0.6        # onnx-emit time / onnxruntime-web time
CODE_TARGET = 150_000    # .wasm code bytes, weights excluded
ARENA_TARGET = 1.05      # arena bytes / liveness lower bound


def _bytes(n: int | None) -> str:
    if n is None:
        return "–"
    for unit, scale in (("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _ms(t: dict[str, Any] | None) -> str:
    if not t:
        return "–"
    m = t["median_ms"]
    return f"{m:.3f}" if m < 1 else f"{m:.2f}" if m < 100 else f"{m:.0f}"


def _mark(ok: bool) -> str:
    return "✓" if ok else "✗"


def _ratio(r: float | None, target: float) -> str:
    return "–" if r is None else f"**{r:.3f}** {_mark(r <= target)}"  # 3 decimals: 1.002 must not read as 1


def _err(res: Result, key: str) -> str:
    if key not in res.err:
        return "–"
    e = res.err[key]
    text = "inf" if math.isinf(e) else f"{e:.1e}"
    if not res.ok.get(key, False):
        return f"**{text} MISMATCH**"
    return text + (" (constant output)" if res.ref_constant else "")


def _arena_ratio(res: Result) -> float | None:
    a, lb = res.sizes.get("arena"), res.sizes.get("lower_bound")
    if a is None or lb is None:
        return None
    return 1.0 if lb == 0 and a == 0 else (a / lb if lb else math.inf)


def _misses(results: list[Result], value, target: float, fmt: str) -> str:
    measured = [(r.id, value(r)) for r in results if value(r) is not None]
    missed = [(i, v) for i, v in measured if v > target]
    head = f"met on {len(measured) - len(missed)} of {len(measured)} measured models"
    if not missed:
        return head
    return head + "; missed on " + ", ".join(f"{i} ({fmt.format(v)})" for i, v in missed)


def _tolerance(results: list[Result]) -> str:
    checked = [r for r in results if "native" in r.ok or "wasm" in r.ok]
    bad = [f"{r.id} ({', '.join(k for k in ('native', 'wasm') if not r.ok.get(k, True))})"
           for r in checked if not all(r.ok.get(k, True) for k in ("native", "wasm"))]
    head = f"{len(checked) - len(bad)} of {len(checked)} checked models"
    return head + ("; MISMATCH on " + ", ".join(bad) if bad else "")


def markdown(results: list[Result], meta: dict[str, Any], chart_name: str) -> str:
    m, tools, flags = meta["machine"], meta["tools"], meta["flags"]
    lines = [
        "# onnx-emit benchmark",
        "",
        f"Written by `make bench` (`bench/run.py`) on {meta['date']}, in {meta['total_s']:.0f} s. "
        "Every figure below comes from that one run on this machine; rerun it to compare.",
    ]
    if meta["quick"]:
        lines += ["", "**`--quick` run: a handful of timed runs per model. A smoke check; the timings are noise.**"]
    lines += [
        "",
        "## Machine and tools",
        "",
        f"- CPU: {m['cpu']}, {m['cores']} cores (SIMD: {m['simd']}); {m['os']}",
        f"- native: onnx-emit built by cffi with {tools['native compiler']}, flags `{flags['native']}` "
        "(targets/native.toml, added to Python's own)",
        f"- wasm: {tools['emcc'].removesuffix(' ()')}, flags `{flags['wasm']}` (targets/wasm.toml); run by Node {tools['node']}",
        f"- onnxruntime {tools['onnxruntime']} (Python, CPUExecutionProvider, intra_op_num_threads=1, "
        "inter_op_num_threads=1, sequential, ORT_ENABLE_ALL)",
        f"- onnxruntime-web {tools['onnxruntime-web']} (npm, wasm backend under Node, numThreads=1, its SIMD build, "
        "graphOptimizationLevel all, loaded from node_modules)",
        f"- Python {m['python']}, numpy {m['numpy']}; onnx-emit {m.get('onnx-emit', 'unknown')}",
    ]
    if "load" in meta:
        # other work on the machine inflates both sides' times and their spread; the reader should know
        lines.append(f"- load average (1 min) at start / end of the run: {meta['load'][0]:.2f} / {meta['load'][1]:.2f} "
                     f"on {m['cores']} cores")
    lines += [
        "",
        "## Time",
        "",
        "Median milliseconds per inference, one thread. Ratio = onnx-emit / the onnxruntime build beside it: below 1 "
        f"onnx-emit is faster. Issue 5's targets: native ≤ {NATIVE_TARGET:g}, wasm ≤ {WASM_TARGET:g} (✓ met, ✗ missed). "
        f"Max err = max |onnx-emit − onnxruntime CPU| / max(1, max |onnxruntime|) over the outputs, checked before "
        f"timing; above {meta['rtol']:.0e} (the tolerance of `tests/test_models.py`) it is flagged MISMATCH.",
        "",
        "| model | input | native onnx-emit | onnxruntime | native ratio | wasm onnx-emit | onnxruntime-web | wasm ratio "
        "| max err native | max err wasm |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in results:
        n, w = r.timing.get("native", {}), r.timing.get("wasm", {})
        lines.append(f"| {r.id} | {r.inputs} | {_ms(n.get('emit'))} | {_ms(n.get('ort'))} | "
                     f"{_ratio(r.ratio('native'), NATIVE_TARGET)} | {_ms(w.get('emit'))} | {_ms(w.get('ortweb'))} | "
                     f"{_ratio(r.ratio('wasm'), WASM_TARGET)} | {_err(r, 'native')} | {_err(r, 'wasm')} |")
    lines += [
        "",
        f"![onnx-emit / onnxruntime time ratios]({chart_name})",
        "",
        "## Size and memory",
        "",
        f"`.wasm` code and data as the build records them (manifest.json's `wasm`: data is the weights and constants); "
        f"issue 5's targets: code ≤ {CODE_TARGET / 1000:g} kB, arena ≤ {ARENA_TARGET:g}× the liveness lower bound "
        "(the largest sum of tensors live at one step, `onnx-emit inspect --json`). Export + build is the wall time of "
        "`emit.export(...)` for that target: import, passes, C, compiler, with every kernel compiled (no object cache: "
        "a rebuild takes its objects from the cache and compiles model.c only).",
        "",
        "| model | .onnx | .wasm code | .wasm data | native .so | arena | lower bound | arena / bound | export+build native "
        "| export+build wasm |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in results:
        s = r.sizes
        code = "–" if "code" not in s else f"{_bytes(s['code'])} {_mark(s['code'] <= CODE_TARGET)}"
        ar = _arena_ratio(r)
        ar_text = "–" if ar is None else f"{ar:.3f} {_mark(ar <= ARENA_TARGET)}"
        ex = {t: (f"{r.export_s[t]:.1f} s" if t in r.export_s else "–") for t in ("native", "wasm")}
        lines.append(f"| {r.id} | {_bytes(s.get('onnx'))} | {code} | {_bytes(s.get('data'))} | {_bytes(s.get('so'))} | "
                     f"{_bytes(s.get('arena'))} | {_bytes(s.get('lower_bound'))} | {ar_text} | {ex['native']} | {ex['wasm']} |")
    lines += [
        "",
        "## Issue 5 targets in this run",
        "",
        f"- native ≤ {NATIVE_TARGET:g}× onnxruntime: " + _misses(results, lambda r: r.ratio("native"), NATIVE_TARGET, "{:.3f}×"),
        f"- wasm ≤ {WASM_TARGET:g}× onnxruntime-web: " + _misses(results, lambda r: r.ratio("wasm"), WASM_TARGET, "{:.3f}×"),
        f"- .wasm code ≤ {CODE_TARGET / 1000:g} kB: "
        + _misses(results, lambda r: r.sizes.get("code"), CODE_TARGET, "{:,} B"),
        f"- arena ≤ {ARENA_TARGET:g}× lower bound: " + _misses(results, _arena_ratio, ARENA_TARGET, "{:.3f}×"),
        "- outputs within tolerance: " + _tolerance(results),
    ]
    failed = [r for r in results if r.errors]
    if failed:
        lines += ["", "## Failures", ""]
        for r in failed:
            for stage, msg in r.errors.items():
                lines.append(f"- {r.id}, {stage}: {msg}")
    lines += [
        "",
        "## Spread",
        "",
        "Per runtime: timed runs, then p10 / median / p90 in ms; load: the 1-minute load average when the model "
        "started (the benchmark itself adds about 1). onnxruntime-web against onnxruntime CPU is shown as "
        "a sanity check of the reference (max err).",
        "",
        "| model | load | native onnx-emit | onnxruntime | wasm onnx-emit | onnxruntime-web | onnxruntime-web max err |",
        "|---|--:|---|---|---|---|--:|",
    ]

    def spread(t: dict[str, Any] | None) -> str:
        if not t:
            return "–"
        f = [f"{t[k]:.3g}" if t[k] < 1000 else f"{t[k]:.0f}" for k in ("p10_ms", "median_ms", "p90_ms")]
        return f"{t['runs']}: " + " / ".join(f)

    for r in results:
        n, w = r.timing.get("native", {}), r.timing.get("wasm", {})
        load = "–" if r.load is None else f"{r.load:.2f}"
        lines.append(f"| {r.id} | {load} | {spread(n.get('emit'))} | {spread(n.get('ort'))} | {spread(w.get('emit'))} | "
                     f"{spread(w.get('ortweb'))} | {_err(r, 'ortweb')} |")
    b = meta["budget"]
    lines += [
        "",
        "## Method",
        "",
        "- Inputs: `emit.verify.sample_inputs(specs, seed=0)` at the shapes of `tests/models.tsv` (the synthetic "
        "models: built by `bench/synthetic.py` with onnx.helper, random He-scaled weights, seed 0). Both runtimes of a "
        "pair get the same arrays.",
        "- The light_* graphs are the model zoo's architectures with every weight set to 0.02 (tests/models.tsv): "
        "their time is real, but their outputs are constant, so their max err (marked \"constant output\") checks "
        "little.",
        "- Native: `emit.load(D).run(feeds)` against `InferenceSession.run(None, feeds)`, timed call by call from one "
        "Python loop (each includes its binding and output allocation), GC off during the loop.",
        "- Wasm: `bench/node_bench.mjs` in one Node process: the generated `model.mjs` `m.run(feeds)` against "
        "onnxruntime-web's `await session.run(tensors)`, each including its copies in and out of wasm memory.",
        f"- Each pair runs A B A B: {b['warmup']} untimed warm-up pairs, then as many pairs as fit "
        f"{b['seconds']:g} s (at least {b['min_pairs']}, at most {b['max_pairs']}); the median of each side is reported, "
        "so a drift of the machine shifts both alike.",
        "- Raw figures: `results.json` beside this file.",
        "",
    ]
    return "\n".join(lines)


def write_chart(results: list[Result], path: Path, meta: dict[str, Any]) -> None:
    """Horizontal grouped bars, log scale (a 4x slowdown and a 4x speed-up look alike), with the targets drawn."""
    import matplotlib

    matplotlib.use("Agg")  # no display here, and none needed for a file
    import matplotlib.pyplot as plt

    ids = [r.id for r in results]
    native = [r.ratio("native") for r in results]
    wasm = [r.ratio("wasm") for r in results]
    fig_h = 0.55 * len(ids) + 2.0
    fig, ax = plt.subplots(figsize=(9, fig_h), dpi=120)
    h = 0.38
    ys = list(range(len(ids)))[::-1]  # first model on top, as in the table
    # native above wasm within each model (y grows upwards)
    bars = [("native: onnx-emit / onnxruntime", native, h / 2, "#1f77b4"),
            ("wasm: onnx-emit / onnxruntime-web", wasm, -h / 2, "#ff7f0e")]
    values = [v for _, vs, _, _ in bars for v in vs if v]
    lo = min([0.4, *values]) / 1.5
    hi = max([2.0, *values]) * 1.6
    for label, vs, off, color in bars:
        y = [yy + off for yy, v in zip(ys, vs) if v]
        x = [v for v in vs if v]
        # bars start at the axis' left edge: on a log axis a bar from 0 cannot be drawn
        ax.barh(y, [v - lo for v in x], height=h, left=lo, color=color, label=label)
        for yy, v in zip(y, x):
            ax.text(v * 1.04, yy, f"{v:.3f}", va="center", fontsize=8)
        for yy, v in zip(ys, vs):
            if not v:
                ax.text(lo * 1.05, yy + off, "not measured", va="center", fontsize=7, color="grey")
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ax.axvline(NATIVE_TARGET, color="#1f77b4", ls="--", lw=1, label=f"native target ({NATIVE_TARGET:g}×, parity)")
    ax.axvline(WASM_TARGET, color="#ff7f0e", ls="--", lw=1, label=f"wasm target ({WASM_TARGET:g}×)")
    ax.set_yticks(ys, ids)
    ax.set_ylim(-0.6, len(ids) - 0.4)
    ax.set_xlabel("time ratio, single thread (lower is better; < 1: onnx-emit faster)")
    ticks = [t for t in (0.1, 0.2, 0.3, 0.5, 0.6, 1, 2, 3, 5, 10, 20, 30, 50, 100) if lo <= t <= hi]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    title = f"onnx-emit vs onnxruntime ({meta['machine']['cpu']}, {meta['date'][:10]})"
    if meta["quick"]:
        title += " — QUICK RUN, noise"
    ax.set_title(title, fontsize=9)
    fig.legend(*ax.get_legend_handles_labels(), loc="lower center", ncol=2, fontsize=8, frameon=False)
    ax.grid(axis="x", which="major", alpha=0.3)
    fig.tight_layout(rect=(0, 0.5 / fig_h, 1, 1))  # the bottom 0.5 inch holds the legend
    fig.savefig(path)
    plt.close(fig)
