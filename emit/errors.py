"""Errors the user can cause. The CLI prints them as one line and exits 2."""

from __future__ import annotations


class EmitError(Exception):
    """A problem with what the user passed (model, shapes, options): one line, exit code 2."""


class UnsupportedError(EmitError):
    """The model needs something the compiler does not do (yet)."""


def node_label(op_type: str, name: str) -> str:
    """How a node is named in messages: `Conv 'conv1'`."""
    return f"{op_type} '{name}'" if name else op_type
