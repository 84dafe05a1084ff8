"""Custom operators (--custom-op DOMAIN::OP=kernel.c): the user's C kernel runs the nodes of its op natively and in
wasm, with attributes, several inputs and outputs; the generated header and C stay strict C99; without a kernel,
or with a bad one, the error is one line naming the op and how to supply it."""

from __future__ import annotations

import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import emit
from emit.errors import EmitError

from .helpers import REPO, ort_run, run_cli
from .test_c_folder import STRICT, need

KERNELS = REPO / "tests" / "custom_ops"
SWISH = f"com.example::Swish={KERNELS / 'swish.c'}"
ADDSUB = f"com.example::AddSub={KERNELS / 'add_sub.c'}"
W = np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32)
X = np.random.default_rng(3).standard_normal((2, 8)).astype(np.float32)


def swish_model(custom: bool) -> onnx.ModelProto:
    """x @ W, then Swish(beta=1.5), Swish(beta=0.5): as the custom op, or as Mul/Sigmoid/Mul for onnxruntime."""
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"], name="mm")]
    for k, (src, dst, beta) in enumerate((("h", "a", 1.5), ("a", "y", 0.5))):
        if custom:
            nodes.append(helper.make_node("Swish", [src], [dst], domain="com.example", beta=beta, name=f"swish{k}"))
        else:
            nodes += [helper.make_node("Mul", [src, f"beta{k}"], [f"bx{k}"]), helper.make_node("Sigmoid", [f"bx{k}"], [f"s{k}"]),
                      helper.make_node("Mul", [src, f"s{k}"], [dst])]
    inits = [numpy_helper.from_array(W, "W")] + [numpy_helper.from_array(np.float32(b), f"beta{k}") for k, b in enumerate((1.5, 0.5))]
    g = helper.make_graph(nodes, "swishnet", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 16])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)] + ([helper.make_opsetid("com.example", 1)] if custom else []))


def addsub_model(fail: int = 0) -> onnx.ModelProto:
    node = helper.make_node("AddSub", ["a", "b"], ["sum", "diff"], domain="com.example", name="addsub", scale=0.5, mode="plain",
                            axes=[0, -1], fail=fail)
    g = helper.make_graph([node], "addsub", [helper.make_tensor_value_info(n, TensorProto.FLOAT, [3, 4]) for n in "ab"],
                          [helper.make_tensor_value_info(n, TensorProto.FLOAT, [3, 4]) for n in ("sum", "diff")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])


@pytest.mark.parametrize("target", ["native", "wasm"])
def test_custom_kernel_matches_onnxruntime_on_the_equivalent_graph(tmp_path, target):
    info = emit.export(swish_model(True), target=target, out=tmp_path, custom_ops=[SWISH])
    assert info["custom_ops"] == ["com.example::Swish"] and "custom_com_example_Swish.c" in info["sources"]
    ref = ort_run(swish_model(False), {"x": X})[0]
    np.testing.assert_allclose(emit.load(tmp_path).run(x=X)["y"], ref, rtol=1e-5, atol=1e-6)
    header = (tmp_path / "emit_custom_com_example_Swish.h").read_text()
    assert "node 'swish0': inputs h float32 [2, 16]; outputs a float32 [2, 16]; attributes beta=1.5" in header
    assert "node 'swish1': inputs a float32 [2, 16]; outputs y float32 [2, 16]; attributes beta=0.5" in header


@pytest.mark.parametrize("target", ["native", "wasm"])
def test_two_inputs_two_outputs_and_attributes(tmp_path, target):
    emit.export(addsub_model(), target=target, out=tmp_path / "ok", custom_ops=[ADDSUB])
    a, b = (np.random.default_rng(k).standard_normal((3, 4)).astype(np.float32) for k in (1, 2))
    got = emit.load(tmp_path / "ok").run(a=a, b=b)
    np.testing.assert_array_equal(got["sum"], (a + b) * np.float32(0.5))
    np.testing.assert_array_equal(got["diff"], a - b)
    emit.export(addsub_model(fail=1), target=target, out=tmp_path / "fails", custom_ops=[ADDSUB])
    with pytest.raises(RuntimeError, match="custom operator's kernel .* reported an error"):
        emit.load(tmp_path / "fails").run(a=a, b=b)


@pytest.mark.parametrize("cc", ["gcc", "clang", "emcc"])
def test_generated_custom_op_code_is_strict_c99(tmp_path, cc):
    need(cc, {"emcc": "emscripten"}.get(cc, cc))
    emit.export(swish_model(True), target="c", out=tmp_path / "s", custom_ops=[SWISH])
    emit.export(addsub_model(), target="c", out=tmp_path / "a", custom_ops=[ADDSUB])
    for folder in (tmp_path / "s", tmp_path / "a"):
        srcs = sorted(p.name for p in folder.glob("*.c"))
        proc = subprocess.run([cc, *STRICT, "-c", *srcs], cwd=folder, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-3000:]


def test_missing_or_bad_kernels_are_one_line_errors(tmp_path):
    onnx.save(swish_model(True), tmp_path / "m.onnx")
    proc = run_cli("export", tmp_path / "m.onnx", "-o", tmp_path / "o")
    assert proc.returncode == 2 and proc.stderr.splitlines()[-1] == (
        "onnx-emit: error: unsupported operator: com.example::Swish (node 'swish0'): a custom operator: give its C kernel "
        "with --custom-op com.example::Swish=kernel.c (docs/CUSTOM_OPS.md)")
    for spec, message in [("com.example::Swish", "expected DOMAIN::OP=kernel.c"),
                          (f"com.example::Swish={tmp_path / 'nope.c'}", "not found"),
                          (f"::Swish={KERNELS / 'swish.c'}", "expected DOMAIN::OP=kernel.c"),
                          (f"ai.onnx::Relu={KERNELS / 'swish.c'}", "is ONNX's own")]:
        proc = run_cli("export", tmp_path / "m.onnx", "-o", tmp_path / "o", "--custom-op", spec)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr, (spec, proc.stderr)
    broken = tmp_path / "broken.c"
    broken.write_text('#include "emit_custom_com_example_Swish.h"\nint com_example_Swish(void) { return nope; }\n')
    proc = run_cli("export", tmp_path / "m.onnx", "-o", tmp_path / "b", "--target", "native", "--custom-op", f"com.example::Swish={broken}")
    assert proc.returncode == 2 and "native build failed" in proc.stderr and "custom_com_example_Swish.c" in proc.stderr
    with pytest.raises(EmitError, match="given twice"):
        emit.export(swish_model(True), out=tmp_path / "t", custom_ops=[SWISH, SWISH])
