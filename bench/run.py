"""onnx-emit against onnxruntime (native, Python) and onnxruntime-web (wasm, Node) on the model set of issue 5.

    .venv/bin/python bench/run.py                      # the whole set, writes bench/RESULTS.md + bench/ratios.png
    .venv/bin/python bench/run.py --models mlp,lenet   # a subset
    .venv/bin/python bench/run.py --quick              # a few runs per model: a smoke check, not a measurement

For each model: export for native and wasm (timed), check both builds' outputs against onnxruntime on the same
input (the error is reported, a mismatch flagged), time onnx-emit native against onnxruntime CPU from one Python
loop and model.wasm against onnxruntime-web inside one Node process (bench/node_bench.mjs), both interleaved
A B A B, and collect the artefact sizes and the arena against its liveness lower bound.

This is a benchmark, not a test: a model that fails to export or run is reported in the table and the run goes
on; only a missing tool stops it, before any model is touched.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))  # the emit package of this checkout, even if .venv's editable install points elsewhere

import report  # noqa: E402 - bench/ is sys.path[0] when run as a script
import synthetic  # noqa: E402

SYNTHETIC = list(synthetic.BUILDERS)
REAL = ["ppocrv4_det", "ppocrv4_rec", "nudenet_320n", "minilm_l6_int8w", "silero_vad_openvino_16k", "mtcnn_onet",
        "light_resnet50", "light_squeezenet"]
MODELS = SYNTHETIC + REAL

# The tolerance of tests/test_models.py (`onnx-emit verify --rtol 1e-4 --atol 0`): |got - ref| <= 1e-4 * max(1, max|ref|).
RTOL = 1e-4


@dataclasses.dataclass(frozen=True)
class Budget:
    """How long to time one comparison (one model, one pair of runtimes): pairs = budget / (time of one A+B pair),
    clamped to [min_pairs, max_pairs], after `warmup` untimed pairs. A fixed time rather than a fixed count keeps the
    whole set near its total whatever each model costs, while tiny models still get thousands of samples."""

    seconds: float
    warmup: int
    min_pairs: int
    max_pairs: int


# 11 models x 2 comparisons x 10 s = 220 s of timing; exports, builds and sessions bring the set to ~6-8 min here.
FULL = Budget(seconds=10.0, warmup=5, min_pairs=10, max_pairs=3000)
QUICK = Budget(seconds=0.3, warmup=1, min_pairs=3, max_pairs=30)


class ToolMissing(Exception):
    """A tool the benchmark needs is absent; the message says what to install."""


# --------------------------------------------------------------------------- tools and the machine


def _first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def native_compiler() -> str:
    # cffi compiles with the compiler Python was built with (sysconfig's CC), not whatever `cc` is on PATH
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return cc


def preflight() -> dict[str, str]:
    """Every tool, checked before the first model: a 10-minute run must not die at model 9 for want of node."""
    try:
        import onnxruntime
    except ImportError:
        raise ToolMissing("onnxruntime is not installed: .venv/bin/pip install onnxruntime (or make deps)") from None
    try:
        import matplotlib  # noqa: F401 - the chart
    except ImportError:
        raise ToolMissing("matplotlib is not installed: .venv/bin/pip install -e '.[bench]' (or make bench)") from None
    if shutil.which("emcc") is None:
        raise ToolMissing("emcc (emscripten) is not on PATH: apt-get install emscripten")
    node = shutil.which("node")
    if node is None:
        raise ToolMissing("node is not on PATH: apt-get install nodejs")
    # a real onnxruntime-web session, not only an import: the bundled .wasm must load from disk, offline
    proc = subprocess.run([node, str(BENCH / "node_bench.mjs"), "--probe"], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or ["no message"])[-1][:400]
        raise ToolMissing(f"onnxruntime-web does not run under node: {why} "
                          "(install it with `npm install` in the repository root; package.json lists onnxruntime-web)")
    versions = json.loads(proc.stdout)
    cc = native_compiler()
    if shutil.which(cc) is None:
        raise ToolMissing(f"{cc} (the C compiler Python's cffi uses) is not on PATH: apt-get install gcc")
    return {
        "onnxruntime": onnxruntime.__version__,
        "onnxruntime-web": versions["ortweb"],
        "node": versions["node"],
        "native compiler": _first_line([cc, "--version"]),
        "emcc": _first_line(["emcc", "--version"]),
    }


def machine() -> dict[str, str]:
    cpu, flags = platform.processor() or "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and cpu in ("unknown", "", platform.machine()):
                cpu = value.strip()
            elif key.strip() in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    simd = [f for f in ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "asimd") if f in flags]
    info = {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "simd": " ".join(simd) or "unknown",
        "os": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        # the reports an earlier run wrote are not changes to what is measured
        reports = [f":(exclude)bench/{f}" for f in ("RESULTS.md", "ratios.png", "results.json")]
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "--", ".",
                                *reports], capture_output=True, text=True)
        if rev.returncode == 0:
            info["onnx-emit"] = rev.stdout.strip() + (" + uncommitted changes" if dirty.stdout.strip() else "")
    except OSError:
        pass
    return info


# --------------------------------------------------------------------------- timing


def summarize(times_ms: list[float]) -> dict[str, float]:
    s = np.sort(np.asarray(times_ms))
    return {"median_ms": float(np.median(s)), "min_ms": float(s[0]), "p10_ms": float(s[int(0.1 * len(s))]),
            "p90_ms": float(s[min(len(s) - 1, int(0.9 * len(s)))]), "runs": len(s)}


def interleaved(fns: dict[str, Callable[[], Any]], budget: Budget) -> dict[str, dict[str, float]]:
    """Median per function over pairs run A B A B: both see the same machine state over the same stretch of time,
    so a frequency or thermal drift, or a noisy neighbour, shifts both alike instead of biasing the ratio."""
    # warm-up: caches, lazy allocations, branch predictors; capped at a fifth of the budget so that a slow model's
    # warm-up does not cost more than its measurement
    t0 = time.perf_counter()
    for i in range(budget.warmup):
        for f in fns.values():
            f()
        if i and time.perf_counter() - t0 > 0.2 * budget.seconds:
            break
    t0 = time.perf_counter()
    for f in fns.values():
        f()
    pair = max(time.perf_counter() - t0, 1e-6)
    n = max(budget.min_pairs, min(budget.max_pairs, int(budget.seconds / pair)))
    times: dict[str, list[float]] = {k: [] for k in fns}
    clock = time.perf_counter_ns
    # The cyclic GC would fire on whichever side happens to allocate the triggering object: collect now, then keep
    # it off for the loop (both runtimes allocate only their output arrays, freed by reference counting).
    gc.collect()
    gc.disable()
    try:
        for _ in range(n):
            for k, f in fns.items():
                t = clock()
                f()
                times[k].append((clock() - t) / 1e6)
    finally:
        gc.enable()
    return {k: summarize(v) for k, v in times.items()}


# --------------------------------------------------------------------------- one model


@dataclasses.dataclass
class Result:
    id: str
    source: str
    inputs: str = ""
    errors: dict[str, str] = dataclasses.field(default_factory=dict)
    # seconds of emit.export (compile + build) per target
    export_s: dict[str, float] = dataclasses.field(default_factory=dict)
    # bytes: wasm, code, data (from manifest["wasm"]), so, arena, lower_bound, weights, onnx
    sizes: dict[str, int] = dataclasses.field(default_factory=dict)
    # max |got - ref| / max(1, max|ref|) over the outputs, against onnxruntime CPU; and whether it is within RTOL
    err: dict[str, float] = dataclasses.field(default_factory=dict)
    ok: dict[str, bool] = dataclasses.field(default_factory=dict)
    # every reference output holds one repeated value (the light_* graphs' weights are all 0.02): a zero error
    # then says little about the kernels, and the report says so
    ref_constant: bool = False
    # the machine's 1-minute load average when this model started: other work there widens both sides' spread
    load: float | None = None
    # timing["native"] = {"emit": summary, "ort": summary}; timing["wasm"] = {"emit": ..., "ortweb": ...}
    timing: dict[str, dict[str, dict[str, float]]] = dataclasses.field(default_factory=dict)

    def ratio(self, kind: str) -> float | None:
        t = self.timing.get(kind, {})
        ref = "ort" if kind == "native" else "ortweb"
        if "emit" in t and ref in t and t[ref]["median_ms"] > 0:
            return t["emit"]["median_ms"] / t[ref]["median_ms"]
        return None


def _describe_inputs(shapes: dict[str, tuple[tuple[int, ...], str]]) -> str:
    return "; ".join(f"{n} {'x'.join(map(str, s))} {d}" for n, (s, d) in shapes.items())


def _compare(got: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> tuple[float, bool]:
    """Worst output's error relative to max(1, max|ref|) (verify's measure) and whether every output passes."""
    from emit.verify import compare

    worst, ok = 0.0, True
    for name, r in ref.items():
        if name not in got:
            return float("inf"), False
        rep = compare(name, np.asarray(got[name]).reshape(r.shape), r, rtol=RTOL, atol=0.0)
        worst = max(worst, rep.max_rel)
        ok = ok and rep.ok
    return worst, ok


def _ort_session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _stage(res: Result, stage: str, fn: Callable[[], Any]) -> Any:
    """Run one stage; a failure is recorded under its name (one line) and returns None, so the model's other
    figures (and the other models) are still measured."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - a benchmark reports every failure and goes on
        msg = " ".join(str(exc).split())[:300] or type(exc).__name__
        res.errors[stage] = f"{type(exc).__name__}: {msg}"
        if os.environ.get("BENCH_TRACEBACK"):
            traceback.print_exc()
        return None


def _model_source(model_id: str, work: Path) -> tuple[Path, dict[str, tuple[tuple[int, ...], str]], str]:
    if model_id in synthetic.BUILDERS:
        path, shapes = synthetic.write(model_id, work / "models", seed=0)
        return path, shapes, "synthetic (seed 0)"
    from emit.models_zoo import fetch, get_entry

    entry = get_entry(model_id)
    return fetch(model_id), dict(entry.input_shapes), f"models.tsv ({entry.package} {entry.version})"


def _run_node(node: str, job: dict, job_path: Path, timeout: float) -> dict:
    job_path.write_text(json.dumps(job))
    # --expose-gc: node_bench collects before its timed loop, as the Python side does
    proc = subprocess.run([node, "--expose-gc", str(BENCH / "node_bench.mjs"), str(job_path)],
                          stdout=subprocess.PIPE, stderr=None, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"node_bench exited {proc.returncode} (its message is above)")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_model(model_id: str, work: Path, budget: Budget, node: str, log: Callable[[str], None]) -> Result:
    import emit
    from emit.cli import inspect_model
    from emit.runner import TensorSpec
    from emit.verify import sample_inputs

    mdir = work / model_id
    shutil.rmtree(mdir, ignore_errors=True)
    mdir.mkdir(parents=True)
    res = Result(model_id, "", load=round(os.getloadavg()[0], 2))
    src = _stage(res, "fetch", lambda: _model_source(model_id, work))
    if src is None:
        return res
    path, shapes, res.source = src
    res.inputs = _describe_inputs(shapes)
    res.sizes["onnx"] = path.stat().st_size
    bind = {n: s for n, (s, _d) in shapes.items()}
    feeds = sample_inputs([TensorSpec(n, d, s) for n, (s, d) in shapes.items()], seed=0)

    sess = _stage(res, "onnxruntime", lambda: _ort_session(path))
    ref = None
    if sess is not None:
        names = [o.name for o in sess.get_outputs()]
        ref = _stage(res, "onnxruntime", lambda: dict(zip(names, sess.run(names, feeds))))
        if ref:
            res.ref_constant = all(r.size and np.all(r == r.flat[0]) for r in ref.values())

    rep = _stage(res, "inspect", lambda: inspect_model(str(path), bind, {}))
    if rep is not None:
        if rep.get("unsupported") or rep.get("lowering_error"):
            res.errors["inspect"] = rep.get("error") or rep.get("lowering_error") or "unsupported ops"
        else:
            res.sizes.update(arena=rep["arena_bytes"], lower_bound=rep["arena_lower_bound_bytes"],
                             weights=rep["weight_bytes"])

    def export(target: str) -> dict:
        t0 = time.perf_counter()
        info = emit.export(str(path), target=target, out=mdir / target, shapes=bind)
        res.export_s[target] = time.perf_counter() - t0
        return info

    # native: export + build, correctness, then time against onnxruntime from this loop
    ninfo = _stage(res, "export native", lambda: export("native"))
    model = None
    if ninfo is not None:
        res.sizes["so"] = (mdir / "native" / ninfo["native"]["file"]).stat().st_size
        res.sizes.setdefault("arena", int(ninfo["arena_bytes"]))
        model = _stage(res, "load native", lambda: emit.load(mdir / "native"))
    if model is not None:
        got = _stage(res, "run native", lambda: model.run(feeds))
        if got is not None and ref is not None:
            res.err["native"], res.ok["native"] = _compare(got, ref)
    log(f"  native: export+build {res.export_s.get('native', float('nan')):.1f}s, "
        f"max err {res.err.get('native', float('nan')):.1e}{'' if res.ok.get('native', True) else ' MISMATCH'}")
    fns: dict[str, Callable[[], Any]] = {}
    if model is not None and "run native" not in res.errors:
        fns["emit"] = lambda: model.run(feeds)
    if ref is not None:
        fns["ort"] = lambda: sess.run(None, feeds)
    if fns:
        timing = _stage(res, "time native", lambda: interleaved(fns, budget))
        if timing:
            res.timing["native"] = timing
            log("  native: " + _timing_line(timing, "ort"))
    # drop the native model and the session before node runs: their memory is not needed any more
    fns.clear()
    model = sess = None

    # wasm: export + build, then Node runs both runtimes and writes their outputs for the comparison here
    winfo = _stage(res, "export wasm", lambda: export("wasm"))
    if winfo is not None:
        w = winfo["wasm"]
        res.sizes.update(wasm=int(w["wasm_bytes"]), code=int(w["code_bytes"]), data=int(w["data_bytes"]))
    io_dir = mdir / "io"
    io_dir.mkdir()
    inputs = []
    for name, (shape, dtype) in shapes.items():
        f = io_dir / f"in_{len(inputs)}.bin"
        # the module's buffers and JS typed arrays are little-endian whatever the host
        np.ascontiguousarray(feeds[name], dtype=np.dtype(dtype).newbyteorder("<")).tofile(f)
        inputs.append({"name": name, "dtype": dtype, "shape": list(shape), "file": str(f)})
    job = {"emit_loader": str(mdir / "wasm" / "model.mjs") if winfo else "/nonexistent/model.mjs", "onnx": str(path),
           "inputs": inputs, "outputs_dir": str(io_dir), "budget_s": budget.seconds, "warmup": budget.warmup,
           "min_pairs": budget.min_pairs, "max_pairs": budget.max_pairs}
    # generous: min_pairs of a slow model can outlast the budget; a hung process must still end
    out = _stage(res, "node", lambda: _run_node(node, job, mdir / "job.json", timeout=600 + 60 * budget.seconds))
    if out is not None:
        for who, msg in out.get("errors", {}).items():
            if who == "emit" and winfo is None:
                continue  # the export failure is already recorded
            res.errors[f"wasm {who}"] = msg
        if ref is not None:
            for who in ("emit", "ortweb"):
                if who in out.get("outputs", {}):
                    got = {o["name"]: np.fromfile(o["file"], dtype=ref[o["name"]].dtype.newbyteorder("<"))
                           for o in out["outputs"][who] if o["name"] in ref}
                    key = "wasm" if who == "emit" else "ortweb"
                    res.err[key], res.ok[key] = _compare(got, ref)
        if out.get("timing"):
            res.timing["wasm"] = out["timing"]
    log(f"  wasm: export+build {res.export_s.get('wasm', float('nan')):.1f}s, code {res.sizes.get('code', 0):,} B + data "
        f"{res.sizes.get('data', 0):,} B, max err {res.err.get('wasm', float('nan')):.1e}"
        f"{'' if res.ok.get('wasm', True) else ' MISMATCH'}")
    if "wasm" in res.timing:
        log("  wasm: " + _timing_line(res.timing["wasm"], "ortweb"))
    for stage, msg in res.errors.items():
        log(f"  FAILED {stage}: {msg}")
    return res


def _timing_line(t: dict[str, dict[str, float]], ref: str) -> str:
    parts = [f"{k} {v['median_ms']:.3f} ms (n={v['runs']})" for k, v in t.items()]
    if "emit" in t and ref in t:
        parts.append(f"ratio {t['emit']['median_ms'] / t[ref]['median_ms']:.2f}")
    return ", ".join(parts)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", help=f"comma-separated subset of: {','.join(MODELS)}")
    ap.add_argument("--quick", action="store_true", help="a few runs per model (smoke check; the figures are noise)")
    ap.add_argument("--budget", type=float, help="seconds of timing per model and comparison "
                    f"(default {FULL.seconds:g}, --quick {QUICK.seconds:g})")
    ap.add_argument("--out", type=Path, default=BENCH / "RESULTS.md", help="the report (default bench/RESULTS.md); "
                    "the chart (ratios.png) and the raw figures (results.json) go beside it")
    ap.add_argument("--work", type=Path, default=ROOT / "build" / "bench", help="where the models are exported")
    ap.add_argument("--from-json", type=Path, metavar="RESULTS_JSON",
                    help="measure nothing: rewrite the report and the chart from an earlier run's results.json")
    args = ap.parse_args(argv)
    if args.from_json:
        data = json.loads(args.from_json.read_text())
        write_report([Result(**r) for r in data["results"]], data["meta"], args.out, raw=False)
        return 0

    ids = MODELS
    if args.models:
        ids = [m.strip() for m in args.models.split(",") if m.strip()]
        unknown = [m for m in ids if m not in MODELS]
        if unknown:
            ap.error(f"unknown model(s) {', '.join(unknown)} (known: {', '.join(MODELS)})")
    budget = QUICK if args.quick else FULL
    if args.budget is not None:
        budget = dataclasses.replace(budget, seconds=args.budget)

    def log(msg: str) -> None:
        print(msg, flush=True)

    try:
        tools = preflight()
    except ToolMissing as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    node = shutil.which("node") or "node"
    from emit.targets import target_config

    flags = {t: " ".join(target_config(t).get("cflags", []) + target_config(t).get("simd_cflags", []))
             for t in ("native", "wasm")}
    meta = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(), "tools": tools,
            "flags": flags, "quick": args.quick, "budget": dataclasses.asdict(budget), "rtol": RTOL}
    log(f"bench: {len(ids)} model(s), ~{budget.seconds:g}s of timing per comparison; {meta['machine']['cpu']}; "
        f"onnxruntime {tools['onnxruntime']}, onnxruntime-web {tools['onnxruntime-web']}")
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ["ONNX_EMIT_OBJECT_CACHE"] = "0"  # every export+build a first build's time, the same for every model
    results = []
    t_start = time.perf_counter()
    load_start = os.getloadavg()[0]
    if load_start > 0.5 * (os.cpu_count() or 1):
        log(f"bench: warning: load average {load_start:.2f} on {os.cpu_count()} cores; other work running here will "
            "widen the spread of both sides (the report records the load)")
    for i, model_id in enumerate(ids, 1):
        log(f"[{i}/{len(ids)}] {model_id}")
        t0 = time.perf_counter()
        results.append(bench_model(model_id, args.work, budget, node, log))
        log(f"  ({time.perf_counter() - t0:.0f}s)")
    meta["total_s"] = round(time.perf_counter() - t_start, 1)
    meta["load"] = [load_start, os.getloadavg()[0]]
    write_report(results, meta, args.out, raw=True)
    return 0


def write_report(results: list[Result], meta: dict[str, Any], out: Path, raw: bool) -> None:
    """RESULTS.md, ratios.png beside it and (raw=True) results.json, the figures it was written from."""
    out.parent.mkdir(parents=True, exist_ok=True)
    chart = out.parent / "ratios.png"
    written = [out, chart]
    if raw:
        path = out.parent / "results.json"
        path.write_text(json.dumps({"meta": meta, "results": [dataclasses.asdict(r) for r in results]}, indent=1) + "\n")
        written.append(path)
    report.write_chart(results, chart, meta)
    out.write_text(report.markdown(results, meta, chart_name=os.path.relpath(chart, out.parent)))
    print(f"bench: wrote {', '.join(map(str, written))} ({meta['total_s']:.0f}s of benchmark)", flush=True)


if __name__ == "__main__":
    sys.exit(main())
