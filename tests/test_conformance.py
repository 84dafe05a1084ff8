"""The ONNX backend node conformance suite (tests/conformance.py), and checks that its harness can fail."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from . import conformance as conf

# Node cases that must pass in the full run. Raise it as ops land (measured: see SUPPORTED_OPS.md);
# EMIT_CONFORMANCE_MIN overrides it, EMIT_CONFORMANCE_MIN=0 still runs the suite without a floor.
MIN_PASSED = 1840  # SUPPORTED_OPS.md: 1843/1884 when written

SMALL = r"^test_(add|relu)$|^test_add_bcast$"


def _cases(pattern: str) -> list[tuple[int, object]]:
    import re

    rx = re.compile(pattern)
    return [(i, c) for i, c in enumerate(conf.load_cases()) if rx.search(c.name)]


def test_small_filter_passes(tmp_path: Path) -> None:
    results = conf.run_suite(SMALL, jobs=1, progress=False, work=tmp_path)
    assert sorted(r.name for r in results) == ["test_add", "test_add_bcast", "test_relu"]
    assert all(r.passed for r in results), [(r.name, r.reason) for r in results if not r.passed]
    assert {r.group for r in results} == {"Add", "Relu"}


def test_wrong_expected_output_fails(tmp_path: Path) -> None:
    (index, case), = _cases(r"^test_add$")
    inputs, expected = case.data_sets[0]
    wrong = [np.asarray(e) + np.float32(0.5) for e in expected]
    bad = dataclasses.replace(case, name="test_add_wrong", data_sets=[(inputs, wrong)])
    ok, = conf.run_cases([(index, bad)], progress=False, work=tmp_path / "w")
    assert not ok.passed and "wrong values in output" in ok.reason
    # and the same comparison, with nothing compiled, is exact on ints and strict on dtype and shape
    assert conf.check_output("y", np.array([1, 2], np.int64), np.array([1, 3], np.int64))
    assert conf.check_output("y", np.array([1.0], np.float64), np.array([1.0], np.float32))
    assert conf.check_output("y", np.zeros((2, 1), np.float32), np.zeros((2,), np.float32))
    assert conf.check_output("y", np.array([1e-3], np.float32), np.array([2e-3], np.float32))  # elementwise, not max-scaled
    assert not conf.check_output("y", np.array([np.nan, 1.0005], np.float32), np.array([np.nan, 1.0], np.float32))


def _patch_run(folder: str, c_statement: str) -> None:
    """Put a statement at the start of the generated run function."""
    model_c = Path(folder) / "model.c"
    text = model_c.read_text()
    anchor = "unsigned char *mem = (unsigned char *)arena;"
    assert anchor in text
    model_c.write_text(text.replace(anchor, anchor + "\n    " + c_statement, 1))


def test_harness_isolates_bad_cases(tmp_path: Path) -> None:
    """A case that does not compile, one that crashes and one that hangs cost only themselves."""
    picked = _cases(r"^test_(add|relu|abs|neg|add_bcast)$")
    jobs = {c.name: conf.export_case(i, c, tmp_path / "cases") for i, c in picked}
    assert all(isinstance(j, dict) for j in jobs.values()), jobs
    _patch_run(jobs["test_relu"]["variants"][0]["folder"], "this is not C;")
    _patch_run(jobs["test_abs"]["variants"][0]["folder"], "*(volatile int *)(void *)0 = 1;")
    _patch_run(jobs["test_neg"]["variants"][0]["folder"], "for (;;) { }")
    runner = conf._Runner(tmp_path, build_timeout=300, case_timeout=10)
    res = runner.run_batch(0, list(jobs.values()))
    assert res["test_add"] == (True, "") and res["test_add_bcast"] == (True, "")
    assert not res["test_relu"][0] and res["test_relu"][1].startswith("C build failed: model.c:")
    assert res["test_abs"] == (False, "crashed: signal 11")
    assert res["test_neg"] == (False, "timeout")


def test_report_format(tmp_path: Path) -> None:
    rs = [
        conf.CaseResult("test_a", ["Softmax"], "Softmax", True),
        conf.CaseResult("test_b", ["Softmax"], "Softmax", False, "unsupported operator: Softmax (node 'n1')"),
        conf.CaseResult("test_b_expanded", ["Exp", "Div"], "Softmax (expanded)", False, "wrong values in output 'y': max abs err 0.5"),
    ]
    out = tmp_path / "S.md"
    conf.write_report(rs, out)
    lines = out.read_text().splitlines()
    assert lines[-1] == "node cases passed: 1/3"
    assert sum(ln.startswith("node cases passed:") for ln in lines) == 1
    assert any(ln.startswith("| Softmax | 1/2 | unsupported operator: Softmax (node '…') (1; test_b)") for ln in lines)
    assert any(ln.startswith("| Softmax (expanded) | 0/1 |") for ln in lines)


def test_full_node_suite() -> None:
    """Every ONNX backend node case, batched; a few minutes on two cores."""
    floor = int(os.environ.get("EMIT_CONFORMANCE_MIN", MIN_PASSED))
    results = conf.run_suite(None, jobs=min(2, os.cpu_count() or 1), progress=False)
    assert len(results) == len(conf.load_cases())
    passed = sum(r.passed for r in results)
    top = "\n".join(f"{n:5d}  {k}" for k, n in conf.top_reasons(results, 10))
    assert passed >= floor, f"only {passed}/{len(results)} node cases pass (floor {floor}); top reasons:\n{top}"
