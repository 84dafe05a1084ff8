"""The browser demo in a real browser: Debian's Chromium driven by Playwright (never a downloaded one).

`examples/demo.py --no-serve` builds the drawing page beside the example model's model.wasm / model.mjs; the demo's own
server serves it on 127.0.0.1; the test draws the ten digits with mouse events and checks, for the exact 64 pixels the
page fed to the model, its prediction and probabilities against the native build and onnxruntime. The wasm target's
generic index.html is opened too, and the demo server's MIME types and busy-port fallback are checked without a browser."""

from __future__ import annotations

import importlib.util
import json
import math
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import emit
from emit.verify import compare

from .helpers import REPO, ort_run

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DEMO = REPO / "examples" / "demo.py"
MODEL = REPO / "examples" / "digits" / "digits_cnn.onnx"
ARTIFACTS = REPO / "build" / "test-artifacts"
TIMEOUT_MS = 30_000


# ---------------------------------------------------------------- mouse paths of the ten digits (280x280 canvas px)


def _arc(cx: float, cy: float, rx: float, ry: float, a0: float, a1: float, n: int = 24) -> list[tuple[float, float]]:
    """Points along an ellipse from angle a0 to a1 (degrees; 0 = right, 90 = down on screen)."""
    return [(cx + rx * math.cos(math.radians(a0 + (a1 - a0) * i / n)), cy + ry * math.sin(math.radians(a0 + (a1 - a0) * i / n)))
            for i in range(n + 1)]


def _line(p: tuple[float, float], q: tuple[float, float], n: int = 8) -> list[tuple[float, float]]:
    return [(p[0] + (q[0] - p[0]) * i / n, p[1] + (q[1] - p[1]) * i / n) for i in range(n + 1)]


# One list of strokes per digit, each stroke one mouse-down ... mouse-up, drawn the way a person would.
DIGITS: dict[int, list[list[tuple[float, float]]]] = {
    0: [_arc(140, 140, 55, 85, -90, 270, 36)],
    1: [_line((115, 85), (145, 50)) + _line((145, 50), (145, 230))[1:]],
    2: [_arc(140, 100, 50, 45, 180, 390, 20) + _line((183, 122), (88, 228))[1:] + _line((88, 228), (198, 228))[1:]],
    3: [_arc(135, 95, 50, 42, 200, 450, 20) + _arc(135, 182, 55, 45, -90, 160, 20)[1:]],
    4: [_line((165, 230), (165, 52)) + _line((165, 52), (82, 170))[1:] + _line((82, 170), (205, 170))[1:]],
    5: [_line((192, 55), (105, 55)) + _line((105, 55), (98, 128))[1:] + _arc(140, 170, 55, 55, -130, 150, 24)[1:]],
    6: [_line((180, 55), (110, 130), 10) + _arc(140, 180, 48, 48, 200, 560, 30)[1:]],
    7: [_line((85, 58), (195, 58)) + _line((195, 58), (120, 228))[1:]],
    8: [_arc(140, 100, 42, 42, 90, 450, 30) + _arc(140, 182, 52, 45, -90, 270, 30)[1:]],
    9: [_arc(135, 100, 48, 45, 0, 360, 30) + _line((183, 100), (170, 228))[1:]],
}
ORDER = [0, 1, 2, 3, 4, 5, 6, 8, 9, 7]  # the last one stays on the screenshot


# ---------------------------------------------------------------- fixtures


def _load_demo():
    spec = importlib.util.spec_from_file_location("emit_demo", DEMO)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def demo():
    return _load_demo()


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """`examples/demo.py --no-serve` into a temporary build folder: the native demo, then the web folder."""
    build = tmp_path_factory.mktemp("demo-build")
    proc = subprocess.run([sys.executable, str(DEMO), "--no-serve", "--build", str(build)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "predictions agree with onnxruntime on 16/16" in proc.stdout, proc.stdout[-2000:]
    web = build / "demo-web"
    for name in ("digits.html", "draw.js", "style.css", "model.mjs", "model.wasm", "index.html"):
        assert (web / name).is_file(), f"{name} missing from {web}"
    return build


@pytest.fixture(scope="module")
def base_url(demo, built):
    server = demo.make_server(built / "demo-web", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (the browser tests never download one)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is missing: pip install playwright (the Python package only; the browser is Debian's)")
    profile = tmp_path_factory.mktemp("chromium-profile")  # fresh: no state from an earlier run
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(str(profile), executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                                   headless=True, viewport={"width": 900, "height": 720},
                                                   device_scale_factor=1)
        ctx.set_default_timeout(TIMEOUT_MS)
        yield ctx
        ctx.close()


def _watch(page) -> list[str]:
    """Console errors, uncaught exceptions and failed requests of `page`, as they come."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"uncaught: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} {r.failure}"))
    page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
    return problems


def _draw(page, strokes: list[list[tuple[float, float]]], box: dict, check_live: bool = False) -> None:
    for stroke in strokes:
        page.mouse.move(box["x"] + stroke[0][0], box["y"] + stroke[0][1])
        page.mouse.down()
        for i, (x, y) in enumerate(stroke[1:], 1):
            page.mouse.move(box["x"] + x, box["y"] + y)
            if check_live and i == len(stroke) // 2:
                # halfway through the first stroke, button still down: the page has already run the model
                page.wait_for_function("window.lastInput !== null && document.body.dataset.state === 'drawing'")
                assert page.locator("#prediction").get_attribute("data-digit") != ""
        page.mouse.up()


def _save(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


# ---------------------------------------------------------------- tests


def test_drawn_digits_match_native_and_onnxruntime(browser, base_url, built):
    page = browser.new_page()
    problems = _watch(page)
    page.goto(f"{base_url}/digits.html")
    page.wait_for_function("document.body.dataset.state === 'empty'")  # model loaded, nothing drawn yet
    assert "loaded in" in page.locator("#status").text_content()
    box = page.locator("#pad").bounding_box()

    inputs, page_probs, page_pred = [], [], []
    for k, digit in enumerate(ORDER):
        page.click("#clear")
        page.wait_for_function("window.lastInput === null && document.body.dataset.state === 'empty'")
        assert page.locator("#prediction").get_attribute("data-digit") == ""
        _draw(page, DIGITS[digit], box, check_live=k == 0)
        page.wait_for_function("document.body.dataset.state === 'ready'")
        seen = page.evaluate("""() => ({
            input: window.lastInput, probs: window.lastProbs,
            digit: document.getElementById('prediction').dataset.digit,
            bars: [...document.querySelectorAll('#bars .bar')].map((b) => [Number(b.dataset.digit), Number(b.dataset.prob)]),
        })""")
        assert len(seen["input"]) == 64 and all(0.0 <= v <= 1.0 for v in seen["input"]), seen["input"]
        assert sum(seen["input"]) > 1.0, "the drawing left almost no ink in the model's input"
        assert [d for d, _ in seen["bars"]] == list(range(10))
        assert [p for _, p in seen["bars"]] == seen["probs"], "the bar chart does not show the probabilities the model gave"
        inputs.append(seen["input"])
        page_probs.append(seen["probs"])
        page_pred.append(int(seen["digit"]))
    _save(page, "browser_demo.png")

    x = np.asarray(inputs, dtype=np.float32).reshape(-1, 1, 8, 8)  # exactly the page's values: JS numbers from float32
    got = np.asarray(page_probs, dtype=np.float32)
    # The native build the demo made has a fixed batch (the 16 samples): pad the drawings to it with blank images.
    native = emit.load(built / "demo")
    batch = native.inputs[0].shape[0]
    assert batch >= len(x), f"the demo's native batch {batch} is smaller than the {len(x)} drawings"
    padded = np.zeros((batch, 1, 8, 8), np.float32)
    padded[: len(x)] = x
    ref_native = native.run({"x": padded})["probs"][: len(x)]
    ref_ort = ort_run(MODEL, {"x": x})[0]
    for name, ref in (("native", ref_native), ("onnxruntime", ref_ort)):
        r = compare("probs", got, ref, rtol=1e-4, atol=0.0)
        assert r.ok, f"page vs {name}: max |diff| {r.max_abs:.3g}"
        assert page_pred == [int(i) for i in ref.argmax(1)], f"page predictions {page_pred} vs {name} {ref.argmax(1).tolist()}"
    # The preprocessing makes clear drawings come out right, not only consistently.
    assert page_pred == ORDER, f"drew {ORDER}, the model read {page_pred}"

    page.click("#clear")
    page.wait_for_function("document.body.dataset.state === 'empty'")
    assert page.evaluate("window.lastInput") is None
    assert page.locator("#prediction").get_attribute("data-digit") == ""
    assert page.locator("#bars .bar").evaluate_all("(bs) => bs.every((b) => b.dataset.prob === '0')")
    assert not problems, "\n".join(problems)
    page.close()


def test_generic_index_page_runs(browser, base_url):
    page = browser.new_page()
    problems = _watch(page)
    page.goto(f"{base_url}/index.html")
    page.wait_for_function("document.getElementById('status').dataset.msPerRun !== undefined"
                           " || document.getElementById('status').className === 'error'")
    status = page.locator("#status")
    assert status.get_attribute("class") != "error", status.text_content()
    assert "per run" in status.text_content()
    assert float(status.get_attribute("data-ms-per-run")) >= 0.0
    rows = page.locator("#outputs tr").evaluate_all("(rs) => rs.slice(1).map((r) => [...r.cells].map((c) => c.textContent))")
    assert len(rows) == 1, rows
    name, dtype, shape, first, argmax = rows[0]
    assert (name, dtype, shape) == ("probs", "float32", "[1, 10]")
    values = [float(v) for v in first.replace("…", "").split(",") if v.strip()]
    assert len(values) == 8 and all(0.0 <= v <= 1.0 for v in values)
    assert 0 <= int(argmax) <= 9
    _save(page, "browser_index.png")
    assert not problems, "\n".join(problems)
    page.close()


def test_demo_server_types_and_busy_port(demo, built):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        server = demo.make_server(built / "demo-web", port)
    finally:
        busy.close()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        got = server.server_address[1]
        assert got != port, "the demo server should move to a free port when the asked one is busy"
        types = {}
        for name in ("digits.html", "draw.js", "model.mjs", "model.wasm", "style.css"):
            with urllib.request.urlopen(f"http://127.0.0.1:{got}/{name}", timeout=10) as resp:
                assert resp.status == 200
                types[name] = resp.headers.get_content_type()
        assert types == {"digits.html": "text/html", "draw.js": "text/javascript", "model.mjs": "text/javascript",
                         "model.wasm": "application/wasm", "style.css": "text/css"}
        info = json.loads((built / "demo-web" / "manifest.json").read_text())
        assert info["inputs"][0]["shape"] == [1, 1, 8, 8] and info["wasm"]["file"] == "model.wasm"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_demo_rejects_a_bad_port(demo, capsys):
    with pytest.raises(SystemExit) as exc:
        demo.main(["--port", "70000", "--no-serve"])
    assert exc.value.code == 2
    assert "--port 70000: expected 0..65535" in capsys.readouterr().err



def test_weights_file_is_fetched_once_and_cached(browser, tmp_path):
    """--weights file in the browser: model.mjs fetches model.weights beside model.wasm, as its own request, and a
    second page load takes it from the browser's HTTP cache (the server sees one request)."""
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    out = tmp_path / "web"
    emit.export(MODEL, target="wasm", out=out, dims={"N": 1}, weights="file", weight_dtype="int8")
    hits: dict[str, int] = {}

    class Handler(SimpleHTTPRequestHandler):
        extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript", ".wasm": "application/wasm"}

        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(out), **kw)

        def end_headers(self):
            self.send_header("Cache-Control", "max-age=600")
            super().end_headers()

        def do_GET(self):
            hits[self.path] = hits.get(self.path, 0) + 1
            super().do_GET()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/index.html"
    x = np.full((1, 1, 8, 8), 0.5, np.float32)
    ref = ort_run(MODEL, {"x": x})[0]
    try:
        for _ in range(2):
            page = browser.new_page()
            problems = _watch(page)
            page.goto(url)
            got = page.evaluate("""async () => {
                const { load } = await import('./model.mjs');
                const m = await load();
                return Array.from(m.run({ x: new Float32Array(64).fill(0.5) }).probs);
            }""")
            assert not problems, "\n".join(problems)
            assert float(np.abs(np.array(got) - ref.ravel()).max()) < 3e-2  # int8 storage
            page.close()
    finally:
        server.shutdown()
        server.server_close()
    assert hits.get("/model.weights") == 1, hits
    assert hits.get("/index.html", 0) >= 1
