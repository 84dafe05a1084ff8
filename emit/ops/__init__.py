"""One module per op family; importing this package registers every lowering."""

from __future__ import annotations

import re

from ..ir import INPUT, OUTPUT, VIEW, WEIGHT, Program
from . import registry
from .registry import Lowering, is_supported, lower_node, op

_FAMILIES = ["copy", "elementwise", "shape", "gemm", "conv", "pool", "reduce", "norm", "resize", "rnn", "index", "quant", "misc", "ml", "training", "tfidf", "contrib", "control", "sequence", "strings"]


def _load_families() -> None:
    import importlib

    for fam in _FAMILIES:
        try:
            importlib.import_module(f"{__name__}.{fam}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{fam}":
                raise


_load_families()


def _c_ident(text: str, limit: int = 24) -> str:
    s = re.sub(r"[^0-9a-zA-Z_]", "_", text)[:limit].strip("_")
    return s or "t"


def assign_cnames(prog: Program) -> dict[str, str]:
    """C names: parameters `in_x`/`out_y`, weights `w3_name.v`, arena pointers `t7_name`; views share their root's."""
    names: dict[str, str] = {}
    taken: set[str] = set()

    def unique(base: str) -> str:
        n, k = base, 1
        while n in taken:
            n, k = f"{base}_{k}", k + 1
        taken.add(n)
        return n

    for k, b in enumerate(prog.buffers.values()):
        san = _c_ident(prog.public(b.name))
        if b.storage == INPUT:
            names[b.name] = unique(f"in_{san}")
        elif b.storage == OUTPUT:
            names[b.name] = unique(f"out_{san}")
        elif b.storage == WEIGHT:
            names[b.name] = unique(f"w{k}_{san}") + ".v"
        elif b.storage != VIEW or prog.root_at(b.name):
            names[b.name] = unique(f"t{k}_{san}")  # a view into part of a buffer: a pointer of its own
    for b in prog.buffers.values():
        if b.storage == VIEW and not prog.root_at(b.name):
            names[b.name] = names[prog.root(b.name).name]
    return names


def lower_program(prog: Program) -> Program:
    cnames = assign_cnames(prog)
    for b in prog.buffers.values():
        b.cname = cnames[b.name]
    prog.steps = [lower_node(prog, n, cnames) for n in prog.nodes]
    return prog


__all__ = ["op", "Lowering", "lower_program", "is_supported", "registry"]
