"""The one sequence op left for run time: SequenceAt with a run-time position over a sequence whose
tensors share one shape (emit/importer/sequences.py turns every other sequence op into names or tensor
ops at compile time). A position out of range makes <prefix>_run return 1."""

from __future__ import annotations

from .registry import Lowering, op


@op("emit.SequenceAt")
def lower_sequence_at(ctx: Lowering) -> None:
    pos, y = ctx.input(0), ctx.output(0)
    elems = ctx.node.inputs[1:]
    n = len(elems)
    cases = "\n".join(
        f"case {k}: " + (f"memcpy({ctx.ptr(y)}, {ctx.ptr(e)}, {y.nbytes}); " if y.nbytes else "") + "break;" for k, e in enumerate(elems)
    )
    ctx.emit(
        f"int64_t k = (int64_t){ctx.ptr(pos)}[0];\n"
        f"if (k < 0) k += {n};\n"
        "switch (k) {\n"
        f"{cases}\n"
        "default: return 1; /* position out of range */\n"
        "}"
    )
