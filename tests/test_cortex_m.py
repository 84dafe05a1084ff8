"""Cortex-M targets: the C folder cross-compiled with arm-none-eabi-gcc (hard float) into lib<prefix>.a plus a test
firmware that runs in qemu-system-arm (mps2-an386 for cortex-m4, mps2-an500 for cortex-m7) over semihosting. Its outputs
match onnxruntime at verify's tolerance (max abs err <= 1e-4 * max(1, max|ref|)); the flash/RAM report adds up; a model
that does not fit the board is a clear EmitError."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import emit
from emit.build.firmware import FirmwareError, run_firmware, run_qemu
from emit.errors import EmitError
from emit.models_zoo import fetch, get_entry
from emit.runner import TensorSpec
from emit.targets import target_config
from emit.verify import compare, run_onnxruntime, sample_inputs

from .helpers import REPO, init, make_model, ort_run, run_cli, tensor

DIGITS = REPO / "examples" / "digits" / "digits_cnn.onnx"
# real models that fit the 4 MiB flash / 4 MiB RAM of QEMU's MPS2 boards and run in about a second under QEMU
REAL_MODELS = ["mtcnn_onet", "silero_vad_openvino_16k", "ppocr_mobile_v2_cls", "mtcnn_rnet"]
ARCH_M4 = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]


def _require_tools() -> None:
    """A missing tool fails the test, naming the Debian package."""
    for tool, pkg in (("arm-none-eabi-gcc", "gcc-arm-none-eabi libnewlib-arm-none-eabi"), ("qemu-system-arm", "qemu-system-arm")):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: apt-get install {pkg}")
    probe = subprocess.run(["arm-none-eabi-gcc", *ARCH_M4, "-print-file-name=librdimon.a"], capture_output=True, text=True)
    if not Path(probe.stdout.strip()).is_absolute():
        pytest.fail("newlib for arm-none-eabi is missing: apt-get install libnewlib-arm-none-eabi")


def _specs(info: dict) -> list[TensorSpec]:
    return [TensorSpec(t["name"], t["dtype"], tuple(t["shape"])) for t in info["inputs"]]


def _assert_matches_ort(model_path: str, out: Path, info: dict, feeds: dict, label: str) -> None:
    got = run_firmware(out, feeds)
    ref = run_onnxruntime(str(model_path), feeds)
    for t in info["outputs"]:
        r = compare(t["name"], got[t["name"]], ref[t["name"]], rtol=1e-4, atol=0.0)
        assert r.ok, f"{label} output {t['name']}: max abs err {r.max_abs:.3g}, max |ref| {r.ref_max:.3g}"


@pytest.fixture(scope="module")
def digits_m4(tmp_path_factory) -> tuple[Path, dict]:
    _require_tools()
    out = tmp_path_factory.mktemp("digits_m4")
    info = emit.export(DIGITS, target="cortex-m4", out=out, dims={"N": 16})
    return out, info


def test_digits_matches_onnxruntime(digits_m4):
    out, info = digits_m4
    assert info["firmware"]["warnings"] == []
    _assert_matches_ort(str(DIGITS), out, info, sample_inputs(_specs(info), seed=0), "digits (random)")
    # the shipped samples: the same probabilities as onnxruntime, so the same predictions
    samples = np.load(REPO / "examples" / "digits" / "samples.npz")
    got = run_firmware(out, {"x": samples["x"]})["probs"]
    ref = ort_run(str(DIGITS), {"x": samples["x"]})[0]
    assert np.abs(got - ref).max() <= 1e-4 * max(1.0, float(np.abs(ref).max()))
    assert (got.argmax(1) == ref.argmax(1)).all()


def test_int8_weights_shrink_flash_and_still_predict(digits_m4, tmp_path):
    """--weight-dtype int8 on a board: the weights in flash take under a third, their float32 copies go to RAM (.bss),
    and the predictions on the shipped samples stay those of onnxruntime."""
    out, info = digits_m4
    small = emit.export(DIGITS, target="cortex-m4", out=tmp_path, dims={"N": 16}, weight_dtype="int8")
    assert small["firmware"]["warnings"] == []
    assert small["firmware"]["flash"]["weights"] < 0.35 * info["firmware"]["flash"]["weights"]
    expanded = small["weights"]["expanded_bytes"]
    assert expanded > 14000 and f"{expanded:,} (expanded weights)" in small["firmware"]["report"]
    samples = np.load(REPO / "examples" / "digits" / "samples.npz")
    got = run_firmware(tmp_path, {"x": samples["x"]})["probs"]
    ref = ort_run(str(DIGITS), {"x": samples["x"]})[0]
    assert 1e-6 < np.abs(got - ref).max() <= 3e-2 and (got.argmax(1) == ref.argmax(1)).all()


def test_memory_report_adds_up(digits_m4):
    out, info = digits_m4
    fw = info["firmware"]
    cfg = target_config("cortex-m4")
    f, r = fw["flash"], fw["ram"]
    assert (out / fw["library"]).is_file() and (out / fw["elf"]).is_file()
    # flash: the parts make the total, which fits the board; the weights are the w*_ arrays, padded for alignment only
    assert f["weights"] + f["model_code"] + f["model_rodata"] + f["other_code"] + f["other_rodata_data"] == f["used"]
    assert f["size"] == cfg["flash"]["size"] and f["used"] <= f["size"]
    # gcc may fold a tiny weight (a bias of two floats) into the code, so nm can see slightly fewer bytes
    assert 0.99 * info["weight_bytes"] <= fw["weight_symbol_bytes"] <= info["weight_bytes"]
    assert fw["weight_symbol_bytes"] <= f["weights"] < fw["weight_symbol_bytes"] + 16 * fw["weight_symbols"]
    assert f["weights"] <= f["used"] and f["model_code"] > 0
    # RAM: the arena is exactly the model's, the stack the TOML's, and the measured peak lies inside it
    assert r["arena"] + r["io_buffers"] + r["stack"] + r["heap"] + r["data_bss"] == r["used"] <= r["size"] == cfg["ram"]["size"]
    assert r["arena"] == info["arena_bytes"]
    io = sum(t["size"] * np.dtype(t["dtype"]).itemsize for t in info["inputs"] + info["outputs"])
    assert io <= r["io_buffers"] < io + 16 * (len(info["inputs"]) + len(info["outputs"]))
    assert r["stack"] == cfg["stack_bytes"] and r["heap"] == cfg["heap_bytes"]
    assert 0 < fw["stack_run_peak"] <= fw["stack_peak"] < r["stack"]
    # the numbers are arm-none-eabi-size's
    proc = subprocess.run(["arm-none-eabi-size", "-A", "-d", str(out / fw["elf"])], capture_output=True, text=True, check=True)
    sizes = {p[0]: int(p[1]) for p in (ln.split() for ln in proc.stdout.splitlines()) if len(p) == 3 and p[1].isdigit()}
    assert sizes[".weights"] == f["weights"] and sizes[".arena"] == r["arena"] and sizes[".model_text"] == f["model_code"]
    report = fw["report"]
    assert isinstance(report, str) and len(report.splitlines()) > 10
    for text in (f"{f['weights']:,}", f"{r['arena']:,}", f"{fw['stack_peak']:,}", "flash", "RAM", "qemu-system-arm"):
        assert text in report, text
    print("\n" + report)


def test_strict_c99_with_arm_gcc(digits_m4):
    """The model's sources and the test firmware's compile warning-free in strict C99 for the Cortex-M4F."""
    out, info = digits_m4
    fw = out / "firmware"
    sources = [out / s for s in info["sources"]] + [fw / "main.c", fw / "startup.c"]
    for src in sources:
        proc = subprocess.run(
            ["arm-none-eabi-gcc", *ARCH_M4, "-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror", "-O2",
             f"-I{out}", f"-I{fw}", "-c", str(src), "-o", "/dev/null"],
            capture_output=True, text=True,
        )
        assert proc.returncode == 0, f"{src.name}: {proc.stderr}"


@pytest.mark.parametrize("model_id", REAL_MODELS)
def test_real_model_in_qemu_matches_onnxruntime(model_id, tmp_path):
    _require_tools()
    path = fetch(model_id)
    shapes = {k: v[0] for k, v in get_entry(model_id).input_shapes.items()}
    info = emit.export(path, target="cortex-m4", out=tmp_path, shapes=shapes)
    fw = info["firmware"]
    assert fw["warnings"] == []
    assert fw["ram"]["arena"] == info["arena_bytes"] and fw["flash"]["used"] <= fw["flash"]["size"]
    _assert_matches_ort(str(path), tmp_path, info, sample_inputs(_specs(info), seed=0), model_id)
    print(f"\n{model_id}:\n{fw['report']}")


def test_cortex_m7_builds_and_runs(tmp_path):
    _require_tools()
    path = fetch("silero_vad_openvino_16k")
    shapes = {k: v[0] for k, v in get_entry("silero_vad_openvino_16k").input_shapes.items()}
    info = emit.export(path, target="cortex-m7", out=tmp_path, shapes=shapes)
    fw = info["firmware"]
    assert fw["target"] == "cortex-m7" and "mps2-an500" in fw["qemu"] and fw["warnings"] == []
    # built for the M7's double-precision FPv5 unit, not the M4's
    attrs = subprocess.run(["arm-none-eabi-readelf", "-A", str(tmp_path / fw["elf"])], capture_output=True, text=True).stdout
    assert "FPv5" in attrs, attrs
    feeds = sample_inputs(_specs(info), seed=1)
    _assert_matches_ort(str(path), tmp_path, info, feeds, "silero on cortex-m7")
    run = run_qemu(tmp_path, feeds)
    assert "Cortex-M7" in run.console and run.stack_peak and run.stack_peak < fw["ram"]["stack"]


def _index_model() -> onnx.ModelProto:
    """int64 indices in, float / bool / int32 out: the firmware's non-float paths, and a runtime range check."""
    nodes = [
        helper.make_node("Gather", ["table", "idx"], ["rows"], axis=0),
        helper.make_node("Greater", ["rows", "zero"], ["pos"]),
        helper.make_node("Cast", ["pos"], ["count"], to=TensorProto.INT32),
    ]
    table = np.arange(15, dtype=np.float32).reshape(5, 3) - 7.0
    return make_model(
        nodes,
        [tensor("idx", [4], TensorProto.INT64)],
        [tensor("rows", [4, 3]), tensor("pos", [4, 3], TensorProto.BOOL), tensor("count", [4, 3], TensorProto.INT32)],
        [init("table", table), init("zero", np.float32(0.0))],
    )


def test_integer_and_bool_tensors_and_bad_inputs(tmp_path):
    _require_tools()
    model = _index_model()
    info = emit.export(model, target="cortex-m4", out=tmp_path, name="indexer")
    assert info["firmware"]["warnings"] == []
    idx = np.array([4, 0, 2, 1], dtype=np.int64)
    got = run_firmware(tmp_path, {"idx": idx})
    for name, ref in zip(("rows", "pos", "count"), ort_run(model, {"idx": idx})):
        assert got[name].dtype == ref.dtype and np.array_equal(got[name], ref), name
    with pytest.raises(ValueError, match="input 'idx': expected shape \\[4\\], got \\[3\\]"):
        run_firmware(tmp_path, {"idx": idx[:3]})
    with pytest.raises(ValueError, match="input 'idx': expected dtype int64, got int32"):
        run_firmware(tmp_path, {"idx": idx.astype(np.int32)})
    with pytest.raises(ValueError, match="missing input 'idx'"):
        run_firmware(tmp_path, {})
    with pytest.raises(ValueError, match="unknown input 'x'"):
        run_firmware(tmp_path, {"idx": idx, "x": idx})
    # an index past the table's end: the model returns 1 on the board, no out-of-bounds read
    with pytest.raises(RuntimeError, match="out of range"):
        run_firmware(tmp_path, {"idx": np.array([0, 9, 0, 0], dtype=np.int64)})


def _matmul_model(k: int, n: int) -> onnx.ModelProto:
    w = np.random.default_rng(0).standard_normal((k, n)).astype(np.float32)
    return make_model([helper.make_node("MatMul", ["x", "w"], ["y"])], [tensor("x", [1, k])], [tensor("y", [1, n])], [init("w", w)])


def test_model_too_big_for_flash_is_a_clear_error(tmp_path):
    _require_tools()
    flash = target_config("cortex-m4")["flash"]["size"]
    big = _matmul_model(1024, flash // 4 // 1024 + 64)  # weights alone exceed the flash: refused before compiling
    with pytest.raises(EmitError, match=r"does not fit cortex-m4: its weights take [\d,]+ bytes, the board's flash is 4,194,304"):
        emit.export(big, target="cortex-m4", out=tmp_path / "a")
    onnx.save(big, tmp_path / "big.onnx")
    proc = run_cli("export", tmp_path / "big.onnx", "--target", "cortex-m4", "-o", tmp_path / "b")
    assert proc.returncode == 2 and "does not fit cortex-m4" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    # weights just under the flash size: the linker finds the overflow, reported the same way
    near = _matmul_model(1000, (flash - 30000) // 4 // 1000)
    with pytest.raises(EmitError, match=r"does not fit cortex-m4: the firmware needs [\d,]+ bytes of flash \(weights"):
        emit.export(near, target="cortex-m4", out=tmp_path / "c")


def test_model_too_big_for_ram_is_a_clear_error(tmp_path):
    _require_tools()
    # a 64 MB intermediate: the arena cannot fit the board's 4 MiB of RAM
    nodes = [helper.make_node("Expand", ["x", "shape"], ["big"]), helper.make_node("ReduceSum", ["big"], ["y"], keepdims=0)]
    model = make_model(nodes, [tensor("x", [1, 16])], [tensor("y", [])], [init("shape", np.array([1 << 20, 16], dtype=np.int64))])
    with pytest.raises(EmitError, match=r"does not fit cortex-m4: RAM needed [\d,]+ bytes \(arena [\d,]+ \+"):
        emit.export(model, target="cortex-m4", out=tmp_path)


def test_missing_toolchain_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no arm-none-eabi-gcc on this PATH
    with pytest.raises(EmitError, match="apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi"):
        emit.export(DIGITS, target="cortex-m4", out=tmp_path / "out", dims={"N": 1})


def test_firmware_fault_is_reported_not_hung(digits_m4, tmp_path):
    """A firmware that faults ends QEMU with the fault registers in the error, instead of hanging until the timeout."""
    out, info = digits_m4
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    fw = broken / "firmware"
    main = fw / "main.c"
    main.write_text(main.read_text().replace("    rc = ", "    rc = (int)*(volatile uint32_t *)0x30000000u;\n    rc = ", 1))
    proc = subprocess.run(["make", "-s", "-C", str(fw)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    with pytest.raises(FirmwareError, match=r"(?s)failed under QEMU.*\*\*\* fault: HardFault.*BFAR=0x30000000"):
        run_qemu(broken, None, timeout=60)
