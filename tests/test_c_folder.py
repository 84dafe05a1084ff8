"""The C folder on its own: strict C99 under gcc and clang, its Makefile and CMakeLists, a plain C caller."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

import emit

from .helpers import REPO, ort_run

STRICT = ["-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror", "-O1"]
DIGITS = REPO / "examples" / "digits" / "digits_cnn.onnx"


def need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is missing: apt-get install {package}")
    return path


@pytest.fixture(scope="module")
def digits_c(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits_c")
    emit.export(DIGITS, target="c", out=out, dims={"N": 2}, name="digits")
    return out


@pytest.mark.parametrize("cc", ["gcc", "clang"])
def test_strict_c99(digits_c, cc):
    need(cc, cc)
    srcs = sorted(p.name for p in digits_c.glob("*.c"))
    proc = subprocess.run([cc, *STRICT, "-c", *srcs], cwd=digits_c, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_plain_c_caller_matches_onnxruntime(digits_c, tmp_path):
    need("gcc", "gcc")
    x = np.load(REPO / "examples" / "digits" / "samples.npz")["x"][:2]
    main = tmp_path / "main.c"
    values = ", ".join(f"{v!r}f" for v in x.ravel().tolist())
    main.write_text(
        '#include <stdio.h>\n#include "model.h"\n'
        f"static const float x[DIGITS_IN0_SIZE] = {{ {values} }};\n"
        "int main(void) {\n"
        "    static float y[DIGITS_OUT0_SIZE];\n"
        "    if (digits_run_static(x, y) != 0) return 1;\n"
        "    for (size_t i = 0; i < DIGITS_OUT0_SIZE; ++i) printf(\"%.9g\\n\", y[i]);\n"
        '    return digits_outputs[0].rank == 2 ? 0 : 3;\n}\n'
    )
    srcs = [str(p) for p in digits_c.glob("*.c")]
    exe = tmp_path / "demo"
    subprocess.run(["gcc", *STRICT, "-I", str(digits_c), str(main), *srcs, "-lm", "-o", str(exe)], check=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    got = np.array([float(v) for v in out.split()], np.float32).reshape(2, 10)
    ref = ort_run(DIGITS, {"x": x})[0]
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_generated_makefile_and_cmake(digits_c, tmp_path):
    need("make", "make")
    work = tmp_path / "mk"
    shutil.copytree(digits_c, work)
    subprocess.run(["make", "-s", "CFLAGS=" + " ".join(STRICT)], cwd=work, check=True, capture_output=True)
    assert (work / "libdigits.a").is_file() and (work / "libdigits.so").is_file()
    need("cmake", "cmake")
    build = tmp_path / "cm"
    subprocess.run(["cmake", "-S", str(digits_c), "-B", str(build)], check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(build)], check=True, capture_output=True)
    assert list(build.glob("libdigits.*"))
