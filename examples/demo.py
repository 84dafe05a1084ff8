"""The demo: compile the bundled digits CNN to C, build it natively and classify a few held-out digits beside
onnxruntime; then build it to WebAssembly and serve a page on 127.0.0.1 where you draw a digit with the mouse and
the model, running in your browser, classifies it as you draw.

    python examples/demo.py [--port 8000] [--no-serve] [--build DIR]
"""

from __future__ import annotations

import argparse
import errno
import shutil
import sys
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

import emit
from emit.errors import EmitError

HERE = Path(__file__).resolve().parent
MODEL = HERE / "digits" / "digits_cnn.onnx"
WEB = HERE / "digits" / "web"
BUILD = HERE.parent / "build"
PAGE = "digits.html"  # the drawing page; the folder's index.html is the generic page the wasm target writes


def ascii_digit(img: np.ndarray) -> list[str]:
    shades = " .:-=+*#%@"
    return ["".join(shades[min(9, int(v * 9.99))] * 2 for v in row) for row in img]


def native_demo(out: Path) -> int:
    """Export natively, classify the bundled samples beside onnxruntime; 0 when both agree."""
    samples = np.load(HERE / "digits" / "samples.npz")
    x, labels = samples["x"], samples["y"]
    n = x.shape[0]
    t0 = time.perf_counter()
    info = emit.export(MODEL, target="native", out=out, dims={"N": n})
    print(f"exported {MODEL.name} -> {out}/ in {time.perf_counter() - t0:.1f}s: "
          f"{', '.join(info['sources'])}, weights {info['weight_bytes']:,} B, arena {info['arena_bytes']:,} B")
    model = emit.load(out)
    probs = model.run({"x": x})["probs"]

    import onnxruntime as ort

    ref = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    for row in ascii_digit(x[0, 0]):
        print("    " + row)
    print(f"\n{'#':>3} {'label':>5} {'onnx-emit':>10} {'p':>6} {'onnxruntime':>12} {'p':>6}")
    for i in range(n):
        a, b = int(probs[i].argmax()), int(ref[i].argmax())
        print(f"{i:>3} {labels[i]:>5} {a:>10} {probs[i, a]:6.3f} {b:>12} {ref[i, b]:6.3f}")
    err = float(np.abs(probs - ref).max())
    agree = int((probs.argmax(1) == ref.argmax(1)).sum())
    acc = float((probs.argmax(1) == labels).mean())
    print(f"\npredictions agree with onnxruntime on {agree}/{n}; max |prob difference| {err:.2e}; accuracy {acc:.0%}")
    return 0 if agree == n and err < 1e-4 else 1


def build_web(out: Path) -> dict:
    """The browser demo's folder: the model for one image as model.wasm + model.mjs, and the drawing page beside them."""
    info = emit.export(MODEL, target="wasm", out=out, dims={"N": 1})
    for f in sorted(WEB.iterdir()):
        if f.is_file():
            shutil.copyfile(f, out / f.name)
    return info


class _Handler(SimpleHTTPRequestHandler):
    # Module scripts must come with a JavaScript type; a bare system may not know .mjs (or .wasm) at all.
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript", ".js": "text/javascript",
                      ".wasm": "application/wasm", ".css": "text/css", ".html": "text/html; charset=utf-8",
                      ".json": "application/json", ".ts": "text/plain; charset=utf-8"}

    def do_GET(self) -> None:
        if self.path == "/favicon.ico":  # browsers ask for it unprompted; a 404 would log a console error
            self.send_response(204)
            self.end_headers()
            return
        super().do_GET()

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")  # a rebuilt model shows up on reload
        super().end_headers()

    def log_message(self, format: str, *args) -> None:
        pass  # one line per request would bury the URL


def make_server(folder: Path, port: int = 8000, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """An HTTP server for `folder` on host:port, or on a free port when that one is busy (port 0: any free port)."""
    handler = partial(_Handler, directory=str(folder))
    try:
        return ThreadingHTTPServer((host, port), handler)
    except OSError as e:
        if port == 0 or e.errno not in (errno.EADDRINUSE, errno.EACCES):
            raise
        return ThreadingHTTPServer((host, 0), handler)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Export the digits CNN natively and check it against onnxruntime, then "
                                 "build it to WebAssembly and serve a drawing page on 127.0.0.1 until Ctrl-C.")
    ap.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (default 8000; a free one if it is busy)")
    ap.add_argument("--no-serve", action="store_true", help="build everything but do not serve (tests, CI)")
    ap.add_argument("--build", type=Path, default=BUILD, help="where build/demo and build/demo-web go (default: build/)")
    args = ap.parse_args(argv)
    if not 0 <= args.port <= 65535:
        ap.error(f"--port {args.port}: expected 0..65535")

    status = native_demo(args.build / "demo")

    web = args.build / "demo-web"
    t0 = time.perf_counter()
    try:
        info = build_web(web)
    except EmitError as e:
        print(f"error: cannot build the browser demo: {e}", file=sys.stderr)
        return 1
    w = info["wasm"]
    print(f"\nbrowser demo: {web}/ in {time.perf_counter() - t0:.1f}s: model.wasm {w['wasm_bytes']:,} B "
          f"({w['code_bytes']:,} B code, {w['data_bytes']:,} B data), model.mjs, {PAGE}")
    if args.no_serve:
        print(f"not serving (--no-serve); to try it: python3 -m http.server -b 127.0.0.1 -d {web} 8000, "
              f"then open http://127.0.0.1:8000/{PAGE}")
        return status

    try:
        server = make_server(web, args.port)
    except OSError as e:
        print(f"error: cannot serve on 127.0.0.1:{args.port}: {e.strerror or e}", file=sys.stderr)
        return 1
    port = server.server_address[1]
    if port != args.port and args.port != 0:
        print(f"port {args.port} is busy; using {port} instead")
    print(f"\nopen http://127.0.0.1:{port}/{PAGE} and draw a digit (the model's own test page: "
          f"http://127.0.0.1:{port}/index.html)\nserving {web}/ until Ctrl-C", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("\nstopped")
    finally:
        server.server_close()
    return status


if __name__ == "__main__":
    sys.exit(main())
