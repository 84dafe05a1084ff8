"""`onnx-emit export / inspect / verify`: every user error is one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from .errors import EmitError, UnsupportedError

EXIT_OK, EXIT_MISMATCH, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse prints usage + exits 2; keep it one line
        self.exit(EXIT_USAGE, f"onnx-emit: error: {message} (see onnx-emit {self.prog.split()[-1]} --help)\n")


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="the .onnx file")
    p.add_argument("--shape", action="append", default=[], metavar="NAME=DxDxD", help="bind an input's shape, e.g. x=1x3x224x224 (repeatable)")
    p.add_argument("--dim", action="append", default=[], metavar="SYMBOL=N", help="bind a symbolic dim everywhere, e.g. batch=1 (repeatable)")
    p.add_argument("--name", metavar="PREFIX", help="C symbol prefix (default: from the file name)")
    p.add_argument("--custom-op", action="append", default=[], metavar="DOMAIN::OP=kernel.c",
                   help="run nodes of a custom operator with your C function (repeatable; signature in docs/CUSTOM_OPS.md)")


def _storage_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", choices=["embed", "file"], default="embed",
                   help="embed the weights in model.c (default), or write them to a separate OUT/model.weights that the "
                        "runners load and that can be swapped without rebuilding")
    p.add_argument("--weight-dtype", choices=["f32", "f16", "int8"], default="f32",
                   help="storage precision of float32 weights: f32 (default), f16 (half the bytes) or int8 (per-output-channel "
                        "symmetric, a quarter); compute stays float32")


def _bindings(args) -> tuple[dict, dict]:
    from .importer.bind import parse_dim_option, parse_shape_option

    shapes = dict(parse_shape_option(s) for s in args.shape)
    dims = dict(parse_dim_option(d) for d in args.dim)
    if args.name is not None and not args.name.isidentifier():
        raise EmitError(f"--name '{args.name}' is not a valid C identifier")
    return shapes, dims


def cmd_export(args) -> int:
    from .api import check_export_options, export
    from .ops.custom import custom_op_table

    shapes, dims = _bindings(args)
    check_export_options(args.target, args.weights, args.weight_dtype, args.threads)  # refused before any work
    custom_op_table(args.custom_op)
    t0 = time.perf_counter()
    _progress(f"compiling {args.model} for target {args.target} ...")
    info = export(args.model, target=args.target, out=args.out, shapes=shapes, dims=dims, name=args.name, simd=not args.no_simd,
                  weights=args.weights, weight_dtype=args.weight_dtype, custom_ops=args.custom_op, threads=args.threads)
    dt = time.perf_counter() - t0
    w = info["weights"]
    files = ", ".join(info["sources"] + ["model.h", "manifest.json"] + ([w["file"]] if w["mode"] == "file" else []))
    print(f"wrote {args.out}/ ({files}) in {dt:.1f}s")
    where = f"in {w['file']} ({w['blob_bytes']:,} bytes with its header)" if w["mode"] == "file" else "embedded"
    narrowed = f", {w['narrowed']} of {w['tensors']} tensors as {w['dtype']}" if w["dtype"] != "f32" else ""
    print(f"weights {info['weight_bytes']:,} bytes {where}{narrowed}, arena {info['arena_bytes']:,} bytes")
    for line in built_summary(info, args.out):
        print(line)
    return EXIT_OK


def built_summary(info: dict, out: str) -> list[str]:
    """What the target's builder made, one line per artefact (the firmware report is several lines)."""
    lines = []
    if "native" in info:
        lines.append(f"built {out}/{info['native']['file']}")
    if "wasm" in info:
        w = info["wasm"]
        simd = "simd128" if w["simd"] else "no SIMD"
        lines.append(f"built {out}/{w['file']} ({simd}): {w['wasm_bytes']:,} bytes = code {w['code_bytes']:,} + data "
                     f"(weights) {w['data_bytes']:,}; linear memory {w['memory_bytes']:,} bytes")
        lines.append(f"  loader {out}/{w['loader']} (+ model.d.ts), test page {out}/index.html (serve the folder over HTTP)")
    if "pyodide" in info:
        lines.append(f"built {out}/{info['pyodide']['wheel']} (py3-none-any: Pyodide, or CPython with wasmtime)")
    fw = info.get("firmware")
    if fw:
        report = fw.get("report")
        lines.extend(report.splitlines() if isinstance(report, str) else [f"built {out}/firmware"])
    return lines


def inspect_model(model, shapes, dims, name=None, custom_ops=None) -> dict:
    from collections import Counter

    from .importer import import_model
    from .ops import lower_program
    from .passes import optimize, plan_memory
    from .passes.plan_memory import naive_bytes, peak_live_bytes

    try:
        from .ops.custom import custom_op_table

        prog = optimize(import_model(model, shapes=shapes, dims=dims, name=name, custom_ops=custom_op_table(custom_ops)))
    except UnsupportedError as exc:
        if not hasattr(exc, "nodes"):
            raise
        return {"model": str(model), "unsupported": [{"op": o, "domain": d, "node": n} for o, d, n in exc.nodes], "error": str(exc)}
    # the importer has refused unsupported ops already; a lowering may still refuse an attribute or dtype
    lowering_error = None
    try:
        lower_program(prog)
    except EmitError as exc:
        lowering_error = str(exc)
    prog = plan_memory(prog)
    from .codegen import referenced_weights
    from .codegen.storage import storage_sizes

    storage = storage_sizes(prog, referenced_weights(prog)) if lowering_error is None else {}

    def t(n):
        b = prog.buffers[n]
        return {"name": prog.public(n), "dtype": str(b.dtype), "shape": list(b.shape)}

    return {
        "model": str(model),
        "prefix": prog.name,
        "opset": prog.opset,
        "inputs": [t(i) for i in prog.inputs],
        "outputs": [t(o) for o in prog.outputs],
        "ops": dict(sorted(Counter(n.op_type for n in prog.nodes).items())),
        "unsupported": [],
        "lowering_error": lowering_error,
        "nodes": len(prog.nodes),
        "weight_bytes": prog.weight_bytes(),
        "weight_storage_bytes": storage,
        "arena_bytes": prog.arena_bytes,
        "arena_naive_bytes": naive_bytes(prog),
        "arena_lower_bound_bytes": peak_live_bytes(prog),
    }


def _print_unsupported(nodes: list[dict]) -> None:
    print(f"  UNSUPPORTED ({len(nodes)} nodes):")
    for u in nodes:
        dom = f" [{u['domain']}]" if u["domain"] else ""
        print(f"    {u['op']}{dom}: node '{u['node']}'")


def cmd_inspect(args) -> int:
    shapes, dims = _bindings(args)
    rep = inspect_model(args.model, shapes, dims, args.name, args.custom_op)
    if args.json:
        print(json.dumps(rep, indent=2))
        return EXIT_OK
    if "error" in rep:
        print(f"{rep['model']}: {len(rep['unsupported'])} unsupported node(s); shapes and memory need them supported")
        _print_unsupported(rep["unsupported"])
        return EXIT_OK
    print(f"{rep['model']}: opset {rep['opset']}, {rep['nodes']} nodes after folding, C prefix '{rep['prefix']}'")
    for kind in ("inputs", "outputs"):
        for t in rep[kind]:
            print(f"  {kind[:-1]:6} {t['name']}: {t['dtype']} {t['shape']}")
    print("  ops: " + ", ".join(f"{k}x{v}" for k, v in rep["ops"].items()))
    print(f"  weights: {rep['weight_bytes']:,} bytes")
    if rep["weight_storage_bytes"]:
        sizes = ", ".join(f"{k} {v:,} bytes" for k, v in rep["weight_storage_bytes"].items())
        print(f"  weight storage (--weight-dtype): {sizes}")
    saved = 100.0 * (1 - rep["arena_bytes"] / rep["arena_naive_bytes"]) if rep["arena_naive_bytes"] else 0.0
    print(
        f"  arena: {rep['arena_bytes']:,} bytes (naive sum {rep['arena_naive_bytes']:,}, {saved:.0f}% saved; "
        f"liveness lower bound {rep['arena_lower_bound_bytes']:,})"
    )
    if rep["unsupported"]:
        _print_unsupported(rep["unsupported"])
    elif rep["lowering_error"]:
        print(f"  UNSUPPORTED: {rep['lowering_error']}")
    else:
        print("  all ops supported")
    return EXIT_OK


def cmd_verify(args) -> int:
    import numpy as np

    from .api import export
    from .runner import load
    from .verify import compare, run_onnxruntime, sample_inputs

    shapes, dims = _bindings(args)
    source, ort_model, checked, exposed = args.model, args.model, [], set()
    with tempfile.TemporaryDirectory(prefix="onnx-emit-verify-") as tmp:
        if args.per_node:
            from .importer import default_name
            from .importer.load import load_model
            from .verify import expose_intermediates, save_for_onnxruntime

            base = load_model(args.model)
            source, checked = expose_intermediates(base, shapes, dims)
            exposed = {o.name for o in source.graph.output} - {o.name for o in base.graph.output}
            ort_model = os.path.join(tmp, "per_node.onnx")  # onnxruntime must produce the same extra outputs
            save_for_onnxruntime(source, ort_model)
        t0 = time.perf_counter()
        _progress(f"building {args.model} for {args.target}{' with every intermediate tensor as an output' if checked else ''} ...")
        try:
            export(source, target=args.target, out=tmp, shapes=shapes, dims=dims,
                   name=args.name or (default_name(args.model) if args.per_node else None),
                   weights=args.weights, weight_dtype=args.weight_dtype, custom_ops=args.custom_op)
        except EmitError as exc:
            if not args.per_node:
                raise
            raise EmitError(f"--per-node: the build with every intermediate tensor as an output failed: {exc}") from None
        model = load(tmp)
        _progress(f"built in {time.perf_counter() - t0:.1f}s; running onnx-emit and onnxruntime ...")
        if args.inputs:
            try:
                with np.load(args.inputs) as npz:
                    feeds = {k: npz[k] for k in npz.files}
            except Exception as exc:
                raise EmitError(f"--inputs {args.inputs}: cannot read .npz ({type(exc).__name__})") from None
        else:
            feeds = sample_inputs(model.inputs, seed=args.seed)
        try:
            got = model.run(feeds)
        except (ValueError, RuntimeError) as exc:
            raise EmitError(str(exc)) from None
        ref = run_onnxruntime(ort_model, feeds)
        # the per-output report covers the model's own outputs, not the exposed intermediates
        reports = [compare(o.name, got[o.name], ref[o.name], args.rtol, args.atol) for o in model.outputs if o.name not in exposed]
        baseline = {}
        if args.weight_dtype != "f32":  # the accuracy cost of the narrow storage: the same build with f32 weights
            _progress(f"building the f32-weights build to measure what {args.weight_dtype} storage costs ...")
            export(source, target=args.target, out=os.path.join(tmp, "f32"), shapes=shapes, dims=dims, name=args.name,
                   weights=args.weights, custom_ops=args.custom_op)
            got32 = load(os.path.join(tmp, "f32")).run(feeds)
            baseline = {r.name: compare(r.name, got32[r.name], ref[r.name], args.rtol, args.atol) for r in reports}
    ok = True
    if args.per_node:
        from .verify import compare_intermediates, first_mismatch, per_node_lines

        results = compare_intermediates(checked, got, ref, args.rtol, args.atol)
        for line in per_node_lines(results):
            print(line)
        ok = first_mismatch(results) is None
    for r in reports:
        status = "ok" if r.ok else "MISMATCH"
        print(f"{r.name}: max abs err {r.max_abs:.3g}, max rel err {r.max_rel:.3g} (max |ref| {r.ref_max:.3g}) {status}")
        if r.name in baseline:
            b = baseline[r.name]
            print(f"  {args.weight_dtype} weights cost: max abs err {r.max_abs:.3g} vs {b.max_abs:.3g} with f32 weights "
                  f"(max rel {r.max_rel:.3g} vs {b.max_rel:.3g})")
    ok = ok and all(r.ok for r in reports)
    print("PASS" if ok else "FAIL")
    return EXIT_OK if ok else EXIT_MISMATCH


def _build_options(out: Path) -> dict | None:
    """The export options of the build in `out` (its manifest.json), or None when there is none."""
    mf = out / "manifest.json"
    if not mf.is_file():
        return None
    info = json.loads(mf.read_text())
    if info.get("weights", {}).get("mode") != "file":
        raise EmitError(f"{out}: this build embeds its weights; re-export it with --weights file to load a model.weights")
    return info


def _print_keys(tensors: dict, renamed: dict, match) -> None:
    status = {k: "ok" for k in match.matched} | {k: "unexpected" for k in match.unexpected} | \
             {k: "ignored (not float, not in the model)" for k in match.ignored} | \
             {k: "shape mismatch" for k in match.mismatched}
    width = max([len(k) for k in tensors] + [12])
    print(f"{'checkpoint key':{width}}  {'remapped key':{width}}  {'shape':18} {'dtype':9} status")
    for key, value in tensors.items():
        new = renamed[key]
        print(f"{key:{width}}  {new:{width}}  {str(list(value.shape)):18} {value.dtype.name:9} {status.get(new, '?')}")
    for name in match.missing:
        print(f"{'-':{width}}  {name:{width}}  {'':18} {'':9} missing from the checkpoint")


def cmd_weights(args) -> int:
    from .api import weights_file
    from .checkpoints import read_checkpoint, remap_keys
    from .importer import default_name
    from .importer.load import load_model
    from .reweight import check_match, match_checkpoint, with_values

    tensors = read_checkpoint(args.source, top_level_key=args.top_level_key)
    renamed = remap_keys(list(tensors), args.key_remap)
    mapped = {renamed[k]: v for k, v in tensors.items()}
    model = load_model(args.model)
    match = match_checkpoint(model, mapped)
    if args.list_keys:
        _print_keys(tensors, renamed, match)
        return EXIT_OK
    if args.out is None:
        raise EmitError("-o OUT/model.weights is required (or --list-keys to only list the keys)")
    check_match(match, f"{Path(args.source).name} does not fit {Path(args.model).name}")
    out = Path(args.out)
    info = _build_options(out.parent)
    shapes, dims = _bindings(args)
    name, dtype, want, pack, wino = args.name, args.weight_dtype, None, False, False
    if info is not None:  # the build beside the output decides: its blob must load into it
        opts = info.get("export", {})
        shapes = {k: None if v is None else tuple(v) for k, v in opts.get("shapes", {}).items()}
        dims, name, dtype, want = opts.get("dims", {}), opts.get("name", info["prefix"]), info["weights"]["dtype"], info["weights"]["layout_hash"]
        args.custom_op = args.custom_op or opts.get("custom_ops", [])
        pack, wino = bool(opts.get("pack_weights", False)), bool(opts.get("winograd", False))
    _progress(f"compiling {args.model} with {len(match.matched)} tensors from {args.source} ...")
    blob, layout = weights_file(with_values(model, match.matched), shapes=shapes, dims=dims, name=name or default_name(args.model),
                                weight_dtype=dtype, custom_ops=args.custom_op, pack_weights=pack,
                                winograd=wino)
    if want is not None and layout != want:
        raise EmitError(f"{args.model} with these weights compiles to another layout than the build in {out.parent} "
                        "(a constant fold depends on the values); re-export the model instead")
    out.write_bytes(blob)
    extra = f"; ignored {', '.join(match.ignored)}" if match.ignored else ""
    print(f"wrote {out} ({len(blob):,} bytes, {dtype}): {len(match.matched)} tensors from {Path(args.source).name}{extra}")
    return EXIT_OK


def _targets_help() -> str:
    from .targets import available, target_config

    try:
        names = available()
        listed = "; ".join(f"{n}: {target_config(n).get('description', '')}" for n in names)
    except (FileNotFoundError, EmitError):
        listed = "c, native"
    return f"what to build (default: c). {listed}. A board is added by a file in targets/"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="onnx-emit", description="Compile ONNX models ahead of time into portable C99 with embedded weights.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("export", help="write the C folder for a target (and build it)", description="Compile MODEL into OUT/.")
    _model_options(p)
    p.add_argument("--target", default="c", metavar="TARGET", help=_targets_help())
    p.add_argument("--no-simd", action="store_true", help="wasm/pyodide: build without -msimd128, for engines without SIMD")
    _storage_options(p)
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="native builds (targets c, native): split large matrix products across N POSIX threads "
                        "(default 1: single-threaded, as embedded builds must be)")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.set_defaults(fn=cmd_export)

    p = sub.add_parser("inspect", help="ops, shapes, weight and arena bytes", description="Report what compiling MODEL would give.")
    _model_options(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(fn=cmd_inspect)

    p = sub.add_parser("verify", help="build (natively or to wasm) and compare every output with onnxruntime", description="Exit 0 pass, 1 mismatch, 2 bad input.")
    _model_options(p)
    p.add_argument("--inputs", metavar="IN.npz", help="inputs by name (default: seeded random)")
    p.add_argument("--rtol", type=float, default=1e-4, help="relative tolerance, scaled by max(1, max|reference|) (default 1e-4)")
    p.add_argument("--atol", type=float, default=1e-5, help="absolute tolerance (default 1e-5)")
    p.add_argument("--seed", type=int, default=0, help="seed for the random inputs (default 0)")
    p.add_argument("--target", choices=["native", "wasm"], default="native",
                   help="run the cffi build (native, default) or model.wasm through wasmtime (wasm)")
    _storage_options(p)
    p.add_argument("--per-node", action="store_true",
                   help="to debug a mismatch: build a variant with every intermediate tensor of the main graph as an extra "
                        "output, compare each with onnxruntime and report the first node (in graph order) out of tolerance. "
                        "That variant is unfused: a node whose output is exposed is not folded or fused into the next "
                        "(Conv+BatchNorm, activations), so its numbers may differ slightly from the normal build")
    p.set_defaults(fn=cmd_verify)

    p = sub.add_parser("weights", help="write a model.weights from a PyTorch checkpoint (.pt / .safetensors)",
                       description="Map MODEL's initializers to the checkpoint's keys by name and write OUT/model.weights "
                                   "for a build exported with --weights file (no rebuild needed). The checkpoint is read "
                                   "without PyTorch and without running pickled code.")
    _model_options(p)
    p.add_argument("--from", dest="source", required=True, metavar="CKPT", help="torch.save state_dict (.pt/.pth) or .safetensors")
    p.add_argument("-o", "--out", metavar="OUT/model.weights",
                   help="the blob to write; when OUT holds a build, its export options are used and its layout checked")
    p.add_argument("--key-remap", action="append", default=[], metavar="REGEX=REPLACEMENT",
                   help="rename checkpoint keys with re.sub before matching, in order (repeatable), e.g. '^module\\.='")
    p.add_argument("--top-level-key", metavar="KEY", help="take the state_dict from this entry of the checkpoint (e.g. state_dict)")
    p.add_argument("--list-keys", action="store_true", help="print each key, its remapped name, shape, dtype and match, then stop")
    p.add_argument("--weight-dtype", choices=["f32", "f16", "int8"], default="f32", help="storage dtype when OUT holds no build")
    p.set_defaults(fn=cmd_weights)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except EmitError as exc:
        print(f"onnx-emit: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `onnx-emit ... | head`: the reader left; not an error of ours
        sys.stderr.close()
        return EXIT_OK
    except Exception as exc:
        if os.environ.get("ONNX_EMIT_DEBUG"):
            raise
        where = Path(args.model).name if hasattr(args, "model") else ""
        print(f"onnx-emit: internal error on {where}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
              "(set ONNX_EMIT_DEBUG=1 for a traceback)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
