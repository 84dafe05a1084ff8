// The digits demo: turns mouse/touch strokes into the model's 8x8 input and runs model.wasm on every move.
// For tests and the curious, the page exposes its last run: window.lastInput (the 64 values fed to the model, row-major),
// window.lastProbs (the 10 probabilities), #prediction[data-digit], .bar[data-digit][data-prob], body[data-state]
// ("loading" | "empty" | "drawing" | "ready" | "error").
import { load } from "./model.mjs";

// scikit-learn's digits are 32x32 bitmaps of scanned forms, the digit size-normalised to fill the box, cut into
// 4x4 blocks whose ink counts (0..16) make the 8x8 image; the model takes those counts / 16. PEN and MARGIN were
// tuned on synthetic mouse paths (straight, slanted, squeezed, jittered) to match that data's stroke weight.
const BITMAP = 32;   // side of the normalised bitmap
const GRID = 8;      // model input side: one pixel per 4x4 block
const PEN = 5;       // stroke width in bitmap pixels, whatever size the digit was drawn at
const MARGIN = 1;    // bitmap pixels kept free around the ink
const SUPER = 8;     // render the bitmap 8x larger and average: ink coverage instead of a hard 0/1 threshold
const VIEW = 280;    // logical size of the drawing canvas (CSS px)
const VIEW_PEN = 18; // on-screen stroke width

const $ = (id) => document.getElementById(id);
const pad = $("pad");
const view = pad.getContext("2d");
const work = document.createElement("canvas");
work.width = work.height = BITMAP * SUPER;
const workCtx = work.getContext("2d", { willReadFrequently: true });
const preview = $("input8x8").getContext("2d");

let model = null;
let strokes = [];          // [[[x, y], ...], ...] in VIEW coordinates
let drawing = false;
let frame = 0;             // pending requestAnimationFrame id
let runs = 0, runMs = 0;   // for the mean time per run
let loadMs = 0;

window.lastInput = null;
window.lastProbs = null;

function setState(s) {
  document.body.dataset.state = s;
}

// ---------------------------------------------------------------- the bar chart

const bars = [];
for (let d = 0; d < 10; d++) {
  const bar = document.createElement("div");
  bar.className = "bar";
  bar.id = `prob-${d}`;
  bar.setAttribute("role", "listitem");
  bar.dataset.digit = String(d);
  bar.dataset.prob = "0";
  bar.innerHTML = '<span class="pct"></span><div class="track"><div class="fill"></div></div><span class="label"></span>';
  bar.querySelector(".label").textContent = String(d);
  $("bars").append(bar);
  bars.push(bar);
}

function showResult(input, probs) {
  let best = 0;
  for (let i = 1; i < probs.length; i++) if (probs[i] > probs[best]) best = i;
  bars.forEach((bar, d) => {
    const p = probs[d];
    bar.dataset.prob = String(p);
    bar.querySelector(".fill").style.height = `${(p * 100).toFixed(2)}%`;
    bar.querySelector(".pct").textContent = p >= 0.005 ? `${Math.round(p * 100)}%` : "";
    bar.classList.toggle("best", d === best);
  });
  $("prediction").textContent = String(best);
  $("prediction").dataset.digit = String(best);
  $("confidence").textContent = `${(probs[best] * 100).toFixed(1)}% sure it is a ${best}`;
  drawPreview(input);
}

function showEmpty() {
  bars.forEach((bar) => {
    bar.dataset.prob = "0";
    bar.querySelector(".fill").style.height = "0";
    bar.querySelector(".pct").textContent = "";
    bar.classList.remove("best");
  });
  $("prediction").textContent = "–";
  $("prediction").dataset.digit = "";
  $("confidence").textContent = "draw a digit in the box";
  drawPreview(null);
}

function drawPreview(input) {
  const img = preview.createImageData(GRID, GRID);
  for (let i = 0; i < GRID * GRID; i++) {
    const v = Math.round(255 * (1 - (input ? input[i] : 0)));  // ink is dark, like the drawing
    img.data.set([v, v, v, 255], 4 * i);
  }
  preview.putImageData(img, 0, 0);
}

// ---------------------------------------------------------------- strokes → the model's input

function toInput(lines) {
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (const line of lines) {
    for (const [x, y] of line) {
      x0 = Math.min(x0, x); x1 = Math.max(x1, x);
      y0 = Math.min(y0, y); y1 = Math.max(y1, y);
    }
  }
  // Crop to the ink and scale its longer side to fill the box (the pen's width included), keeping the aspect ratio;
  // a single dot has no size, so it stays a dot in the middle.
  const span = Math.max(x1 - x0, y1 - y0);
  const scale = span > 0 ? (BITMAP - 2 * MARGIN - PEN) / span : 1;
  const ox = (BITMAP - (x1 - x0) * scale) / 2 - x0 * scale;
  const oy = (BITMAP - (y1 - y0) * scale) / 2 - y0 * scale;

  const ctx = workCtx;
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, work.width, work.height);
  ctx.setTransform(SUPER * scale, 0, 0, SUPER * scale, SUPER * ox, SUPER * oy);
  // The pen is drawn in strokes' coordinates, so its width there is PEN bitmap pixels divided by the scale.
  ctx.lineWidth = PEN / scale;
  ctx.lineCap = ctx.lineJoin = "round";
  ctx.strokeStyle = ctx.fillStyle = "#000";
  for (const line of lines) {
    ctx.beginPath();
    if (line.length === 1) {
      ctx.arc(line[0][0], line[0][1], PEN / scale / 2, 0, 2 * Math.PI);
      ctx.fill();
      continue;
    }
    ctx.moveTo(line[0][0], line[0][1]);
    for (let i = 1; i < line.length; i++) ctx.lineTo(line[i][0], line[i][1]);
    ctx.stroke();
  }

  // Each input pixel = the ink fraction of its 4x4 block of the bitmap (its (4*SUPER)^2 block of the render).
  const px = work.width / GRID;
  const alpha = ctx.getImageData(0, 0, work.width, work.height).data;
  const input = new Float32Array(GRID * GRID);
  for (let y = 0; y < work.height; y++) {
    const row = Math.floor(y / px) * GRID;
    for (let x = 0; x < work.width; x++) input[row + Math.floor(x / px)] += alpha[4 * (y * work.width + x) + 3];
  }
  for (let i = 0; i < input.length; i++) input[i] /= 255 * px * px;
  return input;
}

function predict() {
  frame = 0;
  if (!model) return;
  if (strokes.length === 0) {
    window.lastInput = window.lastProbs = null;
    showEmpty();
    return;
  }
  const input = toInput(strokes);
  const t0 = performance.now();
  const probs = model.run({ x: input }).probs;
  runMs += performance.now() - t0;
  runs += 1;
  window.lastInput = Array.from(input);
  window.lastProbs = Array.from(probs);
  showResult(input, probs);
  showStatus();
}

// Moves arrive faster than frames; one run per frame is plenty.
function schedule() {
  if (!frame) frame = requestAnimationFrame(predict);
}

// The final answer for a finished stroke is computed at once, so it is in the DOM when pointerup returns.
function predictNow() {
  if (frame) cancelAnimationFrame(frame);
  predict();
  setState(strokes.length ? "ready" : "empty");
}

function showStatus() {
  const per = runs ? `; ${(runMs / runs).toFixed(3)} ms per run (mean of ${runs})` : "";
  $("status").textContent = `model.wasm loaded in ${loadMs.toFixed(1)} ms${per}`;
}

// ---------------------------------------------------------------- drawing

function setupView() {
  const dpr = window.devicePixelRatio || 1;
  pad.width = pad.height = Math.round(VIEW * dpr);
  view.setTransform(pad.width / VIEW, 0, 0, pad.height / VIEW, 0, 0);
  redraw();
}

function redraw() {
  view.save();
  view.setTransform(1, 0, 0, 1, 0, 0);
  view.clearRect(0, 0, pad.width, pad.height);
  view.restore();
  view.lineWidth = VIEW_PEN;
  view.lineCap = view.lineJoin = "round";
  view.strokeStyle = view.fillStyle = "#1b1f24";
  for (const line of strokes) {
    view.beginPath();
    view.moveTo(line[0][0], line[0][1]);
    for (const [x, y] of line) view.lineTo(x, y);  // a lone point still gets a round cap
    view.stroke();
  }
}

function point(e) {
  const r = pad.getBoundingClientRect();
  return [((e.clientX - r.left) * VIEW) / r.width, ((e.clientY - r.top) * VIEW) / r.height];
}

function segment(a, b) {
  view.beginPath();
  view.moveTo(a[0], a[1]);
  view.lineTo(b[0], b[1]);
  view.stroke();
}

pad.addEventListener("pointerdown", (e) => {
  if (e.button !== 0) return;
  e.preventDefault();
  pad.setPointerCapture(e.pointerId);
  drawing = true;
  const p = point(e);
  strokes.push([p]);
  segment(p, p);
  setState("drawing");
  schedule();
});

pad.addEventListener("pointermove", (e) => {
  if (!drawing) return;
  const line = strokes[strokes.length - 1];
  // Coalesced events carry every sample the browser merged into this one: smoother fast strokes.
  const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [];
  for (const ev of events.length ? events : [e]) {
    const p = point(ev);
    segment(line[line.length - 1], p);
    line.push(p);
  }
  schedule();
});

function endStroke() {
  if (!drawing) return;
  drawing = false;
  predictNow();
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

function clear() {
  strokes = [];
  drawing = false;
  redraw();
  predictNow();
}

function undo() {
  strokes.pop();
  drawing = false;
  redraw();
  predictNow();
}

$("clear").addEventListener("click", clear);
$("undo").addEventListener("click", undo);
window.addEventListener("keydown", (e) => {
  if (e.key === "Escape") clear();
  else if ((e.ctrlKey || e.metaKey) && e.key === "z") undo();
});

setupView();
showEmpty();
try {
  const t0 = performance.now();
  model = await load();
  loadMs = performance.now() - t0;
  showStatus();
  predictNow();  // strokes drawn while the model was loading
} catch (err) {
  $("status").textContent = `error: cannot load the model: ${err.message}`;
  $("status").className = "error";
  setState("error");
}
