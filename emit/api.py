"""The Python API: export a model for a target, load an exported one."""

from __future__ import annotations

from pathlib import Path

from .errors import EmitError
from .importer import default_name, import_model
from .ir import Program
from .ops import lower_program
from .passes import optimize, plan_memory
from .runner import Model, load

TARGETS = ("c", "native")


def compile_program(model, shapes=None, dims=None, name: str | None = None) -> Program:
    """ONNX → planned, lowered IR."""
    prog = import_model(model, shapes=shapes, dims=dims, name=name)
    prog = optimize(prog)
    prog = lower_program(prog)
    return plan_memory(prog)


def export(model, target: str = "c", out: str | Path = "out", shapes=None, dims=None, name: str | None = None, quiet: bool = True) -> dict:
    """Compile `model` (a path or ModelProto) into folder `out` for `target`; returns the manifest."""
    from .codegen import write_c_folder

    if target not in TARGETS:
        raise EmitError(f"unknown target '{target}' (targets: {', '.join(TARGETS)})")
    prog = compile_program(model, shapes=shapes, dims=dims, name=name or default_name(model))
    out = Path(out)
    info = write_c_folder(prog, out, source=str(model) if not hasattr(model, "graph") else "model.onnx")
    if target == "native":
        from .build.native import build_native

        build_native(out, quiet=quiet)
        import json

        info = json.loads((out / "manifest.json").read_text())
    return info


__all__ = ["export", "load", "compile_program", "Model"]
