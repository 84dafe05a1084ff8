"""The Python API: export a model for a target, load an exported one."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import EmitError
from .importer import default_name, import_model
from .ir import Program, is_string
from .ops import lower_program
from .passes import optimize, plan_memory
from .runner import Model, load
from .targets import target_config

TARGETS = ("c", "native", "wasm", "pyodide", "cortex-m4", "cortex-m7")  # the bundled targets/*.toml


def compile_program(model, shapes=None, dims=None, name: str | None = None, custom_ops=None,
                    pack_weights: bool = False, winograd: bool = False,
                    conv_windows_one_channel: bool = False) -> Program:
    """ONNX → planned, lowered IR. custom_ops: 'DOMAIN::OP=kernel.c' strings (or ops.custom.CustomOp); pack_weights:
    Conv weights in the GEMM's packed layout, winograd: suitable 3x3 ones in Winograd's form,
    conv_windows_one_channel: the windows path for convolutions of one input channel (the target's TOML decides all
    three: passes/pack_weights.py, passes/winograd.py, passes/conv_paths.py)."""
    from .ops.custom import custom_op_table

    prog = import_model(model, shapes=shapes, dims=dims, name=name, custom_ops=custom_op_table(custom_ops))
    prog = optimize(prog, pack_weights=pack_weights, winograd=winograd,
                    conv_windows_one_channel=conv_windows_one_channel)
    prog = lower_program(prog)
    return plan_memory(prog)


def check_export_options(target: str, weights: str = "embed", weight_dtype: str = "f32", threads: int = 1) -> str:
    """The target's kind, or an EmitError for an unknown target or an option it cannot take."""
    from .codegen.storage import check_options

    kind = target_config(target)["kind"]  # an unknown target is an EmitError listing the known ones
    check_options(weights, weight_dtype)
    if not isinstance(threads, int) or isinstance(threads, bool) or not 1 <= threads <= 256:
        raise EmitError(f"--threads {threads}: expected a whole number from 1 to 256")
    if threads > 1 and kind not in ("source", "cffi-extension"):
        raise EmitError(f"target '{target}': --threads is for native builds (targets c and native); wasm, pyodide and "
                        "firmware builds run on one thread")
    if weights == "file" and kind == "firmware":
        raise EmitError(f"target '{target}': --weights file is for the native and wasm runners; firmware embeds its "
                        "weights in flash (use --weight-dtype f16 or int8 to shrink them)")
    return kind


def export(
    model,
    target: str = "c",
    out: str | Path = "out",
    shapes=None,
    dims=None,
    name: str | None = None,
    quiet: bool = True,
    simd: bool = True,
    weights: str = "embed",
    weight_dtype: str = "f32",
    custom_ops=None,
    threads: int = 1,
) -> dict:
    """Compile `model` (a path or ModelProto) into folder `out` for `target`; returns the manifest.

    Targets are the files of targets/: c (the folder only), native (cffi extension), wasm (model.wasm +
    model.mjs), pyodide (a py3-none-any wheel with the .wasm), firmware kinds (cortex-m4, ...).
    weights: "embed" (in model.c) or "file" (a separate model.weights the runners load; swap it without
    rebuilding). weight_dtype: "f32", "f16" or "int8" (per-channel symmetric) storage; compute stays float32.
    custom_ops: ["DOMAIN::OP=kernel.c", ...], C kernels for operators of the user's own domains (docs/CUSTOM_OPS.md).
    threads: native builds only, split large GEMMs (and the convolutions built on them) across N POSIX threads."""
    from .codegen import write_c_folder
    from .ops.custom import custom_op_table

    kind = check_export_options(target, weights, weight_dtype, threads)
    pack = bool(target_config(target).get("pack_weights", False))
    wino = bool(target_config(target).get("winograd", False))
    one_channel = bool(target_config(target).get("conv_windows_one_channel", False))
    prog = compile_program(model, shapes=shapes, dims=dims, name=name or default_name(model), custom_ops=custom_ops,
                           pack_weights=pack, winograd=wino, conv_windows_one_channel=one_channel)
    out = Path(out)
    strings = [t for t in prog.inputs + prog.outputs if is_string(prog.buffers[t].dtype)]
    if strings and kind not in ("source", "cffi-extension"):
        raise EmitError(
            f"target '{target}': string tensor '{prog.public(strings[0])}' is an input or output; strings cross the "
            "native runner only (targets c and native) — the wasm, pyodide and firmware runners take numbers"
        )
    info = write_c_folder(prog, out, source=str(model) if not hasattr(model, "graph") else "model.onnx",
                          weights=weights, weight_dtype=weight_dtype, threads=threads)
    # what `onnx-emit weights` needs to recompile the same layout from new values
    info["export"] = {"shapes": {k: None if v is None else list(v) for k, v in (shapes or {}).items()}, "dims": dict(dims or {}),
                      "name": prog.name, "weight_dtype": weight_dtype, "pack_weights": pack, "winograd": wino,
                      "custom_ops": [f"{d}::{o}={c.kernel}" for (d, o), c in custom_op_table(custom_ops).items()]}
    (out / "manifest.json").write_text(json.dumps(info, indent=2) + "\n")
    if kind == "source":
        return info
    if kind == "cffi-extension":
        from .build.native import build_native

        build_native(out, quiet=quiet)
    elif kind in ("wasm", "pyodide-wheel"):
        from .build.pyodide import build_wheel, package_name
        from .build.wasm import build_wasm

        if kind == "pyodide-wheel":
            package_name(info)  # a name Python cannot import is refused before the build
        build_wasm(out, simd=simd)  # emcc's output is shown only when it fails
        if kind == "pyodide-wheel":
            build_wheel(out)
    elif kind == "firmware":
        from .build.firmware import build_firmware

        build_firmware(out, target)
    else:
        raise EmitError(f"target '{target}': unknown kind '{kind}' in its TOML file")
    return json.loads((out / "manifest.json").read_text())


def weights_file(model, shapes=None, dims=None, name: str | None = None, weight_dtype: str = "f32",
                 custom_ops=None, pack_weights: bool = False, winograd: bool = False) -> tuple[bytes, str]:
    """(model.weights bytes, layout hash hex) of `model` compiled as export would: what `onnx-emit weights` writes
    (pack_weights, winograd: as for a target that packs Conv weights or stores 3x3 ones in Winograd's form)."""
    from .codegen import referenced_weights
    from .codegen.storage import blob_bytes, plan_weight_storage

    prog = compile_program(model, shapes=shapes, dims=dims, name=name or default_name(model), custom_ops=custom_ops,
                           pack_weights=pack_weights, winograd=winograd)
    layout = plan_weight_storage(prog, referenced_weights(prog), "file", weight_dtype)
    return blob_bytes(layout), layout.layout_hash.hex()


__all__ = ["export", "load", "compile_program", "Model"]
