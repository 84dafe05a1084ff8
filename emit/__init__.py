"""onnx-emit: compile ONNX models ahead of time into portable C99 with embedded weights."""

from __future__ import annotations

__version__ = "0.1.0"

from .api import compile_program, export, load  # noqa: E402

__all__ = ["export", "load", "compile_program", "__version__"]
