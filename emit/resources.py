"""Where the non-Python assets are: the repo's top level in a checkout (editable install),
`emit/_assets/` inside an installed wheel."""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def asset_dir(name: str) -> Path:
    """`runtime_c`, `wasm` or `targets`."""
    for base in (_PKG / "_assets", _PKG.parent):
        if (base / name).is_dir():
            return base / name
    raise FileNotFoundError(f"onnx-emit asset folder '{name}' is missing from the installation")


def runtime_c() -> Path:
    return asset_dir("runtime_c")
