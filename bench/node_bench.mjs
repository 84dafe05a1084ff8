// The wasm half of the benchmark: onnx-emit's model.wasm (through its generated model.mjs) against
// onnxruntime-web's wasm backend, in one Node process, on the same inputs, interleaved A B A B.
//
//   node --expose-gc bench/node_bench.mjs JOB.json   -> one JSON object on stdout (progress on stderr)
//   node bench/node_bench.mjs --probe                -> {"node", "ortweb"} versions, after a real session run
//
// JOB.json (written by bench/run.py):
//   {"emit_loader": "/abs/model.mjs", "onnx": "/abs/model.onnx",
//    "inputs": [{"name", "dtype", "shape", "file"}],      raw little-endian row-major tensors
//    "outputs_dir": "/abs/dir",                           outputs of each runtime land here for run.py to compare
//    "budget_s": 10, "warmup": 3, "min_pairs": 5, "max_pairs": 2000}
//
// onnxruntime-web is imported by its package name: Node resolves it from the node_modules above this file and
// picks the package's "node" export (dist/ort.node.min.mjs), which loads the bundled ort-wasm-simd-threaded.wasm
// from disk, so nothing is fetched. 1.30 has a single SIMD build; numThreads = 1 keeps it on one thread (no
// workers), like intra_op_num_threads = 1 on the native side.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const ARRAYS = {
  float32: Float32Array, float64: Float64Array, int8: Int8Array, uint8: Uint8Array, int16: Int16Array,
  uint16: Uint16Array, int32: Int32Array, uint32: Uint32Array, int64: BigInt64Array, uint64: BigUint64Array,
  bool: Uint8Array,
};

async function importOrt() {
  try {
    const ort = await import("onnxruntime-web");
    return ort.default ?? ort;
  } catch (e) {
    // one line: the minified bundle would otherwise fill the terminal
    throw new Error(`cannot import onnxruntime-web: ${String(e.message).split("\n")[0]}`);
  }
}

async function ortSession(ort, onnxPath) {
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.proxy = false;
  ort.env.logLevel = "error";
  // the same settings as the native side: every graph optimisation, sequential execution
  return ort.InferenceSession.create(onnxPath, {
    executionProviders: ["wasm"],
    graphOptimizationLevel: "all",
    executionMode: "sequential",
    logSeverityLevel: 3, // errors only: a model's unused initializers are not news here
  });
}

function readTensor(t) {
  const Arr = ARRAYS[t.dtype];
  if (!Arr) throw new Error(`input '${t.name}': dtype ${t.dtype} has no typed array here`);
  const buf = readFileSync(t.file);
  // copy into a fresh ArrayBuffer: the Buffer's offset into Node's pool need not be aligned for the type
  const bytes = new Uint8Array(buf.byteLength);
  bytes.set(buf);
  return new Arr(bytes.buffer);
}

function writeTensor(path, arr) {
  writeFileSync(path, Buffer.from(arr.buffer, arr.byteOffset, arr.byteLength));
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function summary(times) {
  if (!times.length) return null;
  const s = [...times].sort((a, b) => a - b);
  const q = (p) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
  return { median_ms: median(s), min_ms: s[0], p10_ms: q(0.1), p90_ms: q(0.9), runs: s.length };
}

const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

async function timeOnce(fn) {
  const t0 = nowMs();
  await fn();
  return nowMs() - t0;
}

// Warm up, estimate one A+B pair, then as many interleaved pairs as fit the budget (within min/max): A and B see
// the same machine state over the same stretch of time, so a clock or thermal drift shifts both alike.
async function interleaved(fns, job) {
  const names = Object.keys(fns);
  // warm-up (JIT tiers, caches, lazy allocations), capped at a fifth of the budget for slow models
  const w0 = nowMs();
  for (let i = 0; i < job.warmup; i++) {
    for (const k of names) await fns[k]();
    if (i && nowMs() - w0 > 200 * job.budget_s) break;
  }
  let pair = 0;
  for (const k of names) pair += await timeOnce(fns[k]);
  const n = Math.max(job.min_pairs, Math.min(job.max_pairs, Math.floor((job.budget_s * 1000) / Math.max(pair, 1e-3))));
  const times = Object.fromEntries(names.map((k) => [k, []]));
  if (globalThis.gc) globalThis.gc(); // start from a clean heap: a major GC inside the loop would land on one side
  for (let i = 0; i < n; i++) for (const k of names) times[k].push(await timeOnce(fns[k]));
  return Object.fromEntries(names.map((k) => [k, summary(times[k])]));
}

async function probe() {
  const ort = await importOrt();
  // a real session on a one-node model proves the bundled .wasm loads offline, not just that the JS imports
  // (a hand-encoded ONNX ModelProto: ir_version 8, opset 13, Relu x -> y on float[1])
  const model = Uint8Array.from(Buffer.from(
    "CAg6MwoMCgF4EgF5IgRSZWx1EgFnWg8KAXgSCgoICAESBAoCCAFiDwoBeRIKCggIARIECgIIAUIECgAQDQ==", "base64"));
  const s = await ortSession(ort, model);
  const r = await s.run({ x: new ort.Tensor("float32", Float32Array.from([-1]), [1]) });
  if (r.y.data[0] !== 0) throw new Error("onnxruntime-web probe: Relu(-1) != 0");
  return { node: process.versions.node, ortweb: ort.env.versions.web };
}

async function main() {
  const arg = process.argv[2];
  if (!arg) throw new Error("usage: node bench/node_bench.mjs JOB.json | --probe");
  if (arg === "--probe") {
    process.stdout.write(JSON.stringify(await probe()) + "\n");
    return;
  }
  const job = JSON.parse(readFileSync(arg, "utf8"));
  const feeds = Object.fromEntries(job.inputs.map((t) => [t.name, readTensor(t)]));
  const result = { errors: {}, outputs: {}, load_ms: {} };
  const fns = {};

  // onnx-emit: the generated loader, as a user would import it
  try {
    const t0 = nowMs();
    const { load } = await import(pathToFileURL(job.emit_loader).href);
    const m = await load();
    result.load_ms.emit = nowMs() - t0;
    const outs = m.run(feeds);
    result.outputs.emit = m.outputs.map((o, i) => {
      const file = join(job.outputs_dir, `emit_${i}.bin`);
      writeTensor(file, outs[o.name]);
      return { name: o.name, file };
    });
    fns.emit = () => m.run(feeds);
  } catch (e) {
    result.errors.emit = String(e.message ?? e).split("\n")[0];
  }

  // onnxruntime-web: tensors built once, as the native side passes the same numpy arrays every call
  try {
    const ort = await importOrt();
    result.versions = { node: process.versions.node, ortweb: ort.env.versions.web };
    const t0 = nowMs();
    const sess = await ortSession(ort, job.onnx);
    result.load_ms.ortweb = nowMs() - t0;
    const tensors = Object.fromEntries(job.inputs.map((t) => [t.name, new ort.Tensor(t.dtype, feeds[t.name], t.shape)]));
    const outs = await sess.run(tensors);
    result.outputs.ortweb = sess.outputNames.map((name, i) => {
      const file = join(job.outputs_dir, `ortweb_${i}.bin`);
      writeTensor(file, outs[name].data);
      return { name, file };
    });
    fns.ortweb = () => sess.run(tensors);
  } catch (e) {
    result.errors.ortweb = String(e.message ?? e).split("\n")[0].slice(0, 600);
  }

  if (Object.keys(fns).length) {
    process.stderr.write(`    node: timing ${Object.keys(fns).join(" vs ")} for ~${job.budget_s}s\n`);
    result.timing = await interleaved(fns, job);
  }
  process.stdout.write(JSON.stringify(result) + "\n");
}

main().catch((e) => {
  process.stderr.write(`node_bench: ${String(e.message ?? e).split("\n")[0]}\n`);
  process.exit(1);
});
