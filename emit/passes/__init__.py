"""IR → IR rewrites, each a small pure function over the Program; `plan_memory` runs last."""

from __future__ import annotations

from ..ir import Program
from .fold_bn import fold_batchnorm
from .fuse_act import fuse_activations
from .plan_memory import plan_memory
from .simplify import drop_identities, prune
from .views import make_views

GRAPH_PASSES = [drop_identities, fold_batchnorm, fuse_activations, prune, make_views]


def optimize(prog: Program) -> Program:
    for p in GRAPH_PASSES:
        prog = p(prog)
    return prog


__all__ = ["optimize", "plan_memory"]
