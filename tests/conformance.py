"""ONNX backend node conformance: every case of `onnx.backend.test.case.node.collect_testcases()`
goes export (target c, graph inputs stay runtime inputs) → native build → run → elementwise compare,
and the results become SUPPORTED_OPS.md and a JSON file.

    python tests/conformance.py [--filter REGEX] [--jobs N] [--batch N] [--out SUPPORTED_OPS.md]
                                [--json PATH] [--min-pass K] [-v]

The parent process collects and exports the cases (fast); a worker subprocess per batch compiles
the batch's C folders into one cffi extension (compilation dominates) and runs them. A batch that
does not compile is split around the culprit named by the compiler (or bisected), so one bad case
costs only itself; a worker that crashes or hangs has its unfinished cases rerun one per worker.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python tests/conformance.py` from anywhere
    sys.path.insert(0, str(REPO))

RTOL = 1e-3
ATOL = 1e-5
DEFAULT_BATCH = 150
BUILD_TIMEOUT = 900.0  # s for one worker's build phase (splitting included); the machine may be loaded
CASE_TIMEOUT = 60.0  # s without progress while running cases
EXPORT_TIMEOUT = 120.0  # s for one case's export in the parent
REASON_CHARS = 300
DEFAULT_REPORT = REPO / "SUPPORTED_OPS.md"
DEFAULT_JSON = REPO / "conformance-results.json"


@dataclass
class CaseResult:
    name: str
    ops: list[str]
    group: str
    passed: bool
    reason: str = ""


# ---------------------------------------------------------------- comparison


def check_output(name: str, got: Any, ref: Any, rtol: float = RTOL, atol: float = ATOL) -> str:
    """'' when `got` matches `ref` (same dtype and shape; |got-ref| <= atol + rtol*|ref| per element,
    NaN equal to NaN; integers and bools exact), else why not."""
    from emit.verify import compare, is_float_dtype

    got, ref = np.asarray(got), np.asarray(ref)
    if ref.dtype.kind in "OU":  # strings: exact text, element by element
        if got.shape != ref.shape:
            return f"output '{name}': shape {list(got.shape)}, expected {list(ref.shape)}"
        bad = [k for k, (g, r) in enumerate(zip(got.ravel().tolist(), ref.ravel().tolist())) if g != r]
        return f"wrong strings in output '{name}': {len(bad)} differ, first at {bad[0]}" if bad else ""
    if got.dtype != ref.dtype:
        return f"output '{name}': dtype {got.dtype}, expected {ref.dtype}"
    if got.shape != ref.shape:
        return f"output '{name}': shape {list(got.shape)}, expected {list(ref.shape)}"
    if ref.dtype.name == "bfloat16":
        rtol = max(rtol, 2**-6)  # two bfloat16 ulps, as onnx's own backend test runner allows
    r = compare(name, got, ref, rtol, atol, elementwise=True)
    if r.ok:
        return ""
    if not is_float_dtype(ref.dtype):
        return f"wrong values in output '{name}' (exact dtype {ref.dtype}): max abs diff {r.max_abs:.3g}"
    return f"wrong values in output '{name}': max abs err {r.max_abs:.3g}, max rel err {r.max_rel:.3g}"


def _short(text: str) -> str:
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    line = lines[0] if lines else ""
    return line if len(line) <= REASON_CHARS else line[: REASON_CHARS - 3] + "..."


def _exc_reason(exc: BaseException) -> str:
    from emit.errors import EmitError

    msg = _short(str(exc))
    return msg if isinstance(exc, EmitError) and msg else _short(f"{type(exc).__name__}: {exc}")


# ---------------------------------------------------------------- cases and their op groups

_CASES: list | None = None


def load_cases() -> list:
    """All node cases of the installed onnx, in a fixed order (their index gives the C prefix)."""
    global _CASES
    if _CASES is None:
        from onnx.backend.test.case.node import collect_testcases

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _CASES = list(collect_testcases())
    return _CASES


def _op_label(node) -> str:
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"


def model_ops(model) -> list[str]:
    """Distinct op types of a model, subgraphs included, in order of appearance."""
    seen: list[str] = []

    def walk(graph) -> None:
        for node in graph.node:
            if _op_label(node) not in seen:
                seen.append(_op_label(node))
            for a in node.attribute:
                if a.HasField("g"):
                    walk(a.g)
                for g in a.graphs:
                    walk(g)

    walk(model.graph)
    return seen


def case_groups(cases: Iterable) -> dict[str, str]:
    """Case name → the op it tests: a single-node case by its node's op type; an `_expanded` case
    (a function body, many nodes) by the op of the case it expands, as 'Softmax (expanded)'."""
    cases = list(cases)
    single = {c.name: _op_label(c.model.graph.node[0]) for c in cases if len(c.model.graph.node) == 1}
    groups = {}
    for c in cases:
        if "_expanded" in c.name:
            base = single.get(c.name.split("_expanded")[0])
            groups[c.name] = f"{base or (model_ops(c.model) or ['?'])[0]} (expanded)"
        else:
            groups[c.name] = single.get(c.name) or "+".join(model_ops(c.model)) or "?"
    return groups


# ---------------------------------------------------------------- export (parent process)


def export_case(index: int, case, root: Path) -> dict | str:
    """Export one case into root/<prefix>; a job dict for a worker, or why the case cannot run."""
    import emit

    graph = case.model.graph
    in_names = [i.name for i in graph.input]
    out_names = [o.name for o in graph.output]
    prefix = f"c{index:04d}"
    variants: dict[tuple, list[int]] = {}  # one export per distinct set of input shapes
    data_sets = [([_as_array(v) for v in inputs], [_as_array(v) for v in expected]) for inputs, expected in case.data_sets]
    for k, (inputs, expected) in enumerate(data_sets):
        if len(inputs) != len(in_names) or len(expected) != len(out_names):
            return f"data set {k} has {len(inputs)} inputs / {len(expected)} outputs, the graph {len(in_names)} / {len(out_names)}"
        sig = tuple(_binding(v) for v in inputs)
        variants.setdefault(repr(sig), [sig, []])[1].append(k)
    job = {"name": case.name, "inputs": in_names, "outputs": out_names, "variants": [], "data": str(root / f"{prefix}.pkl")}
    for n, (sig, sets) in enumerate(variants.values()):
        vprefix = prefix if n == 0 else f"{prefix}_{n}"
        shapes = {name: s for name, s in zip(in_names, sig) if s != "other"}
        folder = root / vprefix
        try:
            with warnings.catch_warnings(), _time_limit(EXPORT_TIMEOUT):
                warnings.simplefilter("ignore")
                emit.export(case.model, target="c", out=folder, shapes=shapes, name=vprefix)
        except _ExportTimeout:
            return f"export timeout ({EXPORT_TIMEOUT:g}s)"
        except Exception as exc:  # noqa: BLE001 - any failure is this case's reason
            return _exc_reason(exc)
        job["variants"].append({"prefix": vprefix, "folder": str(folder), "sets": sets})
    # the compiler accepted it; the harness feeds and compares tensors, sequences (as their elements) and optionals
    for kind, values in (("input", graph.input), ("output", graph.output)):
        for v in values:
            if v.type.WhichOneof("value") not in ("tensor_type", "sequence_type", "optional_type"):
                return f"graph {kind} '{v.name}' is a {v.type.WhichOneof('value').replace('_type', '')}, not a tensor"
    # pickle, not npz: it keeps extension dtypes (bfloat16, float8 from ml_dtypes) intact
    with open(job["data"], "wb") as f:
        pickle.dump(data_sets, f, protocol=pickle.HIGHEST_PROTOCOL)
    return job


class _ExportTimeout(Exception):
    pass


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Interrupt a runaway export (a compiler bug must not stall the suite); main thread only."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise _ExportTimeout()

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _binding(value: Any) -> Any:
    """How an input is bound at export: its shape, a list of element shapes (a sequence, whose elements
    become inputs NAME[0], NAME[1], ...), None (an empty optional), or "other" (not bound)."""
    if isinstance(value, np.ndarray):
        return tuple(value.shape)
    if isinstance(value, list):
        return [tuple(np.shape(e)) for e in value]
    return None if value is None else "other"


def _feeds(names: list[str], inputs: list) -> dict[str, Any]:
    """The compiled function's inputs: a sequence as its elements NAME[k], an empty optional as nothing."""
    feeds: dict[str, Any] = {}
    for name, v in zip(names, inputs):
        if isinstance(v, list):
            feeds.update({f"{name}[{k}]": e for k, e in enumerate(v)})
        elif v is not None:
            feeds[name] = v
    return feeds


def _check_value(name: str, got: dict, ref: Any) -> str:
    """check_output for a tensor, a sequence (outputs NAME[k]) or an empty optional (no output)."""
    if isinstance(ref, list):
        n = 0
        while f"{name}[{n}]" in got:
            n += 1
        if n != len(ref):
            return f"output '{name}': a sequence of {n} tensors, expected {len(ref)}"
        return next((w for w in (check_output(f"{name}[{k}]", got[f"{name}[{k}]"], r) for k, r in enumerate(ref)) if w), "")
    if ref is None:
        return f"output '{name}': expected an empty optional" if name in got else ""
    return f"output '{name}' missing" if name not in got else check_output(name, got[name], ref)


def _as_array(value: Any) -> Any:
    """Test data holds numpy arrays, or TensorProtos for dtypes numpy lacks; sequences stay lists."""
    from onnx import TensorProto, numpy_helper

    return numpy_helper.to_array(value) if isinstance(value, TensorProto) else value


# ---------------------------------------------------------------- worker (subprocess)


def _build(jobs: list[dict], out_dir: Path, tag: str, fail: Callable[[dict, str], None]) -> list[tuple[list[dict], Any, str, str]]:
    """Build jobs into as few extensions as possible: (jobs, ext, module, path) per module built.
    A compile error names its file, so the culprit is dropped and the rest split around it (the
    jobs before it compiled already); an error naming no case (a link error) bisects."""
    from emit.build.native import build_extension
    from emit.runner import import_extension

    built = []
    pending = [jobs]
    count = 0
    while pending:
        group = pending.pop()
        if not group:
            continue
        module = f"_conf_{tag}_{count}"
        count += 1
        try:
            path = build_extension([Path(v["folder"]) for j in group for v in j["variants"]], module, out_dir)
            ext = import_extension(path, module)  # undefined symbols show up only here
        except Exception as exc:  # noqa: BLE001
            text = str(exc)
            at = next((i for i, j in enumerate(group) if any(v["folder"] + "/" in text for v in j["variants"])), None)
            if at is None and len(group) == 1:
                at = 0
            if at is not None:
                reason = text.removeprefix("native build failed: ")
                for v in group[at]["variants"]:
                    reason = reason.replace(v["folder"] + "/", "")
                fail(group[at], _short(f"C build failed: {reason}"))
                pending += [group[at + 1 :], group[:at]]
            else:
                half = len(group) // 2
                pending += [group[half:], group[:half]]
            continue
        built.append((group, ext, module, str(path)))
    return built


def _run_job(job: dict, ext) -> str:
    from emit.runner import NativeFunction

    with open(job["data"], "rb") as f:
        data_sets = pickle.load(f)  # written by export_case in the parent
    multi = len(data_sets) > 1
    for v in job["variants"]:
        info = json.loads((Path(v["folder"]) / "manifest.json").read_text())
        fn = NativeFunction(info, ext)
        for k in v["sets"]:
            inputs, expected = data_sets[k]
            got = fn.run(_feeds(job["inputs"], inputs))
            for name, ref in zip(job["outputs"], expected):
                why = _check_value(name, got, ref)
                if why:
                    return f"{why} (data set {k})" if multi else why
    return ""


def worker_main(spec_path: Path) -> int:
    """Build (unless prebuilt) and run the spec's jobs, logging events as JSON lines as they happen,
    so the parent knows what finished if this process dies."""
    spec = json.loads(Path(spec_path).read_text())
    log = open(spec["events"], "a", buffering=1)  # noqa: SIM115 - lives as long as the process

    def event(**kw: Any) -> None:
        log.write(json.dumps(kw) + "\n")
        log.flush()

    def fail(job: dict, reason: str) -> None:
        event(event="done", name=job["name"], passed=False, reason=reason)

    from emit.runner import import_extension

    jobs = spec["jobs"]
    if spec.get("prebuilt"):
        pre = spec["prebuilt"]
        units = [(jobs, import_extension(Path(pre["path"]), pre["module"]))]
    else:
        units = []
        for group, ext, module, path in _build(jobs, Path(spec["dir"]), spec["tag"], fail):
            event(event="built", module=module, path=path, names=[j["name"] for j in group])
            units.append((group, ext))
    event(event="build_done")
    for group, ext in units:
        for job in group:
            event(event="begin", name=job["name"])
            try:
                reason = _run_job(job, ext)
            except Exception as exc:  # noqa: BLE001
                reason = _short(f"run failed: {type(exc).__name__}: {exc}")
            event(event="done", name=job["name"], passed=not reason, reason=reason)
    return 0


# ---------------------------------------------------------------- orchestration (parent)


@dataclass
class _Events:
    built: dict[str, dict]  # job name → {"module", "path"}
    done: dict[str, tuple[bool, str]]
    build_done: bool


def _read_events(path: Path) -> _Events:
    ev = _Events({}, {}, False)
    if not path.exists():
        return ev
    for line in path.read_text().splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash
        if e["event"] == "built":
            for n in e["names"]:
                ev.built[n] = {"module": e["module"], "path": e["path"]}
        elif e["event"] == "done":
            ev.done[e["name"]] = (e["passed"], e["reason"])
        elif e["event"] == "build_done":
            ev.build_done = True
    return ev


class _Runner:
    def __init__(self, work: Path, build_timeout: float, case_timeout: float) -> None:
        self.work = work
        self.build_timeout = build_timeout
        self.case_timeout = case_timeout
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            self.env[var] = "1"  # the workers already fill the cores

    def _worker(self, bdir: Path, tag: str, jobs: list[dict], prebuilt: dict | None) -> tuple[str, _Events]:
        """Run one worker to its end; ('ok' | 'timeout' | 'signal N' | 'exit N: ...', its events)."""
        events = bdir / f"{tag}.events"
        spec = bdir / f"{tag}.json"
        spec.write_text(json.dumps({"dir": str(bdir), "tag": tag, "events": str(events), "jobs": jobs, "prebuilt": prebuilt}))
        logfile = bdir / f"{tag}.log"
        with open(logfile, "w") as log:
            # own session: a timeout kills the worker and its compiler processes, nothing else
            proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--worker", str(spec)],
                stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=str(REPO), start_new_session=True,
            )
            start = last = time.monotonic()
            size = -1
            while True:
                try:
                    rc = proc.wait(timeout=0.5)
                    break
                except subprocess.TimeoutExpired:
                    pass
                now = time.monotonic()
                new = events.stat().st_size if events.exists() else 0
                if new != size:
                    size, last = new, now
                running = size > 0 and _read_events(events).build_done
                if (not running and now - start > self.build_timeout) or (running and now - last > self.case_timeout):
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    return "timeout", _read_events(events)
        ev = _read_events(events)
        if rc == 0:
            return "ok", ev
        if rc < 0:
            return f"signal {-rc}", ev
        tail = [ln for ln in logfile.read_text(errors="replace").splitlines() if ln.strip()]
        return f"exit {rc}: {_short(tail[-1]) if tail else ''}", ev

    def run_batch(self, bi: int, jobs: list[dict]) -> dict[str, tuple[bool, str]]:
        bdir = self.work / f"batch{bi:03d}"
        bdir.mkdir(parents=True, exist_ok=True)
        status, ev = self._worker(bdir, f"b{bi}", jobs, None)
        results = dict(ev.done)
        left = [j for j in jobs if j["name"] not in results]
        # died or hung: the unfinished cases again, one worker each, to find the culprit(s)
        for n, job in enumerate(left):
            st, ev1 = self._worker(bdir, f"b{bi}_one{n}", [job], ev.built.get(job["name"]))
            if job["name"] in ev1.done:
                results[job["name"]] = ev1.done[job["name"]]
            elif st == "timeout":
                results[job["name"]] = (False, "timeout")
            elif st.startswith("signal"):
                results[job["name"]] = (False, f"crashed: {st}")
            else:
                results[job["name"]] = (False, _short(f"worker failed ({st})" if st != "ok" else "no result"))
        return results


def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def run_cases(
    cases: list[tuple[int, Any]],
    groups: dict[str, str] | None = None,
    jobs: int = 2,
    batch: int = DEFAULT_BATCH,
    progress: bool = True,
    work: Path | None = None,
    keep: bool = False,
    build_timeout: float = BUILD_TIMEOUT,
    case_timeout: float = CASE_TIMEOUT,
) -> list[CaseResult]:
    """Run (index, case) pairs (index → C prefix c0042); results in the order given."""
    groups = groups if groups is not None else case_groups(c for _, c in cases)
    own_work = work is None
    work = Path(tempfile.mkdtemp(prefix="emit-conformance-")) if work is None else Path(work)
    work.mkdir(parents=True, exist_ok=True)
    runner = _Runner(work, build_timeout, case_timeout)
    outcome: dict[str, tuple[bool, str]] = {}
    lock = threading.Lock()
    t0 = time.monotonic()
    chunks = _chunks(cases, max(1, batch))
    finished = [0]

    def say(msg: str) -> None:
        if progress:
            print(f"[conformance {time.monotonic() - t0:6.0f}s] {msg}", file=sys.stderr, flush=True)

    def run(bi: int, runnable: list[dict], unexported: dict[str, tuple[bool, str]]) -> None:
        res = dict(unexported)
        res.update(runner.run_batch(bi, runnable) if runnable else {})
        with lock:
            outcome.update(res)
            finished[0] += 1
            ok = sum(p for p, _ in res.values())
            total = sum(p for p, _ in outcome.values())
            say(f"batch {bi + 1} done: {ok}/{len(res)} passed ({finished[0]}/{len(chunks)} batches, {total}/{len(outcome)} cases passed so far)")

    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = []
            for bi, chunk in enumerate(chunks):
                runnable, unexported = [], {}
                for index, case in chunk:
                    job = export_case(index, case, work / "cases")
                    if isinstance(job, str):
                        unexported[case.name] = (False, job)
                    else:
                        runnable.append(job)
                say(f"batch {bi + 1}/{len(chunks)} exported: {len(runnable)}/{len(chunk)} cases to build")
                futures.append(pool.submit(run, bi, runnable, unexported))
            for f in futures:
                f.result()
    finally:
        if own_work and not keep:
            shutil.rmtree(work, ignore_errors=True)
        elif keep:
            say(f"work files kept in {work}")
    results = [
        CaseResult(c.name, model_ops(c.model), groups.get(c.name, "?"), *outcome.get(c.name, (False, "no result")))
        for _, c in cases
    ]
    for r in results:
        if not r.passed and r.name in REFERENCE_DISAGREES and r.reason.startswith("wrong values"):
            r.reason = f"{REFERENCE_DISAGREES[r.name]} ({r.reason})"
    return results


# cases whose expected outputs (onnx's reference) differ from onnxruntime, which onnx-emit follows
REFERENCE_DISAGREES = {
    "test_maxunpool_export_with_output_shape": "expected values are onnx's reference, which scatters into the inferred "
    "shape and pads it; onnxruntime and PyTorch (followed here) read the indices in the output_shape layout",
}


def run_suite(pattern: str | None = None, **kw: Any) -> list[CaseResult]:
    """The node cases whose name matches `pattern` (re.search; all if None); see run_cases."""
    t = time.monotonic()
    all_cases = load_cases()
    if kw.get("progress", True):
        print(f"[conformance] {len(all_cases)} node cases collected in {time.monotonic() - t:.0f}s", file=sys.stderr, flush=True)
    groups = case_groups(all_cases)
    rx = re.compile(pattern) if pattern else None
    selected = [(i, c) for i, c in enumerate(all_cases) if rx is None or rx.search(c.name)]
    return run_cases(selected, groups, **kw)


# ---------------------------------------------------------------- reports


def reason_key(reason: str) -> str:
    """A reason with its case-specific parts (names, numbers) blanked, so alike failures group."""
    key = re.sub(r"'[^']*'", "'…'", reason)
    return re.sub(r"(?<![A-Za-z_\d])[-+]?\d+(\.\d+)?(e[-+]?\d+)?", "N", key)


def _sort_key(group: str) -> tuple[str, str]:
    return (group.removesuffix(" (expanded)").lower(), group)


def write_report(results: list[CaseResult], path: Path, elapsed: float | None = None) -> None:
    import onnx

    by_group: dict[str, list[CaseResult]] = defaultdict(list)
    for r in results:
        by_group[r.group].append(r)
    passed = sum(r.passed for r in results)
    full = sum(all(r.passed for r in rs) for rs in by_group.values())
    none = sum(not any(r.passed for r in rs) for rs in by_group.values())
    lines = [
        "# Supported ONNX operators",
        "",
        "Generated by `make conformance` (`python tests/conformance.py --out SUPPORTED_OPS.md`); do not edit.",
        "",
        f"Every node test case of the installed onnx {onnx.__version__} (`onnx.backend.test.case.node.collect_testcases()`)",
        "is exported (target `c`; every graph input stays a runtime input of the compiled function), compiled",
        "natively with cffi (many cases per library), run, and compared with the case's expected outputs:",
        f"dtypes and shapes must match; floats pass when |got − ref| ≤ {ATOL:g} + {RTOL:g}·|ref| for every element",
        "(NaN equals NaN; bfloat16 with rtol 2⁻⁶, two of its ulps, as onnx's own backend runner allows);",
        "integers and bools must be exact. A case the compiler does not support counts as",
        "failed. Single-node cases are grouped by their op type, `_expanded` cases (the op's function body) as",
        "'Op (expanded)'.",
        "",
        f"{len(by_group)} op groups: {full} pass every case, {len(by_group) - full - none} some, {none} none."
        + (f" Run time {elapsed / 60:.1f} min." if elapsed else ""),
        "",
        "| op | passed | failures: reason (count; examples) |",
        "|---|---|---|",
    ]
    for group in sorted(by_group, key=_sort_key):
        rs = by_group[group]
        fails: dict[str, list[str]] = defaultdict(list)
        for r in rs:
            if not r.passed:
                fails[reason_key(r.reason)].append(r.name)
        cells = []
        for key, names in sorted(fails.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            text = key if len(key) <= 160 else key[:157] + "..."
            examples = ", ".join(names[:2]) + (", ..." if len(names) > 2 else "")
            cells.append(f"{text} ({len(names)}; {examples})")
        cell = "<br>".join(cells).replace("|", "\\|")
        lines.append(f"| {group} | {sum(r.passed for r in rs)}/{len(rs)} | {cell} |")
    lines += ["", f"node cases passed: {passed}/{len(results)}"]
    Path(path).write_text("\n".join(lines) + "\n")


def write_json(results: list[CaseResult], path: Path, elapsed: float | None = None) -> None:
    import onnx

    doc = {
        "onnx": onnx.__version__,
        "rtol": RTOL,
        "atol": ATOL,
        "passed": sum(r.passed for r in results),
        "total": len(results),
        "seconds": round(elapsed, 1) if elapsed is not None else None,
        "cases": [asdict(r) for r in results],
    }
    Path(path).write_text(json.dumps(doc, indent=1) + "\n")


def top_reasons(results: list[CaseResult], n: int = 15) -> list[tuple[str, int]]:
    return Counter(reason_key(r.reason) for r in results if not r.passed).most_common(n)


# ---------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return worker_main(Path(argv[1]))
    ap = argparse.ArgumentParser(description="Run the ONNX backend node cases through onnx-emit (native) and report.")
    ap.add_argument("--filter", help="only cases whose name matches this regex (re.search)")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="batches built and run at once (default 2)")
    ap.add_argument("--batch", type=int, default=DEFAULT_BATCH, help=f"cases per compiled library (default {DEFAULT_BATCH})")
    ap.add_argument("--out", type=Path, help="write the markdown report here (default SUPPORTED_OPS.md for an unfiltered run)")
    ap.add_argument("--json", type=Path, help="write per-case results here (default conformance-results.json for an unfiltered run)")
    ap.add_argument("--min-pass", type=int, default=0, help="exit 1 when fewer cases pass")
    ap.add_argument("--build-timeout", type=float, default=BUILD_TIMEOUT, help="seconds for one batch's build")
    ap.add_argument("--case-timeout", type=float, default=CASE_TIMEOUT, help="seconds one case may run")
    ap.add_argument("--work", type=Path, help="work folder (default: a temporary one, removed afterwards)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every case's result")
    args = ap.parse_args(argv)

    t0 = time.monotonic()
    results = run_suite(
        args.filter, jobs=args.jobs, batch=args.batch, work=args.work, keep=args.keep,
        build_timeout=args.build_timeout, case_timeout=args.case_timeout,
    )
    elapsed = time.monotonic() - t0
    out = args.out if args.out or args.filter else DEFAULT_REPORT
    js = args.json if args.json or args.filter else DEFAULT_JSON
    if out:
        write_report(results, out, elapsed)
    if js:
        write_json(results, js, elapsed)
    passed = sum(r.passed for r in results)
    for r in results:
        if args.verbose or (not r.passed and len(results) <= 50):
            print(f"{'PASS' if r.passed else 'FAIL'} {r.name}" + (f": {r.reason}" if r.reason else ""))
    if not args.verbose and len(results) > 50:
        for key, count in top_reasons(results, 10):
            print(f"{count:5d}  {key}")
    print(f"node cases passed: {passed}/{len(results)} in {elapsed:.0f}s" + (f" (report: {out})" if out else ""))
    if passed < args.min_pass:
        print(f"fewer than --min-pass {args.min_pass} cases pass", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
