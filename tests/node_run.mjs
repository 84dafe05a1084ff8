// Runs an exported wasm model in Node through its own model.mjs, the way a user would.
//   node tests/node_run.mjs OUT/ job.json
// job.json: {"inputs": {name: "raw little-endian file"}, "outputs": {name: "file to write"}, "repeat": n}
// Prints {"load_ms", "run_ms"} (run_ms: the median of `repeat` runs after one warm-up) as JSON.
import { readFile, writeFile } from "node:fs/promises";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";

const [folder, jobFile] = process.argv.slice(2);
const job = JSON.parse(await readFile(jobFile, "utf8"));
const ARRAYS = { float32: Float32Array, float64: Float64Array, int8: Int8Array, uint8: Uint8Array, int16: Int16Array,
  uint16: Uint16Array, int32: Int32Array, uint32: Uint32Array, int64: BigInt64Array, uint64: BigUint64Array, bool: Uint8Array };

const t0 = performance.now();
const { load } = await import(pathToFileURL(resolve(folder, "model.mjs")).href);
const m = await load();
const loadMs = performance.now() - t0;

const feeds = {};
for (const t of m.inputs) {
  const buf = await readFile(job.inputs[t.name]);
  const Arr = ARRAYS[t.dtype];
  feeds[t.name] = new Arr(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
}
let outs = m.run(feeds);
const times = [];
for (let i = 0; i < (job.repeat || 0); i++) {
  const t1 = performance.now();
  outs = m.run(feeds);
  times.push(performance.now() - t1);
}
times.sort((a, b) => a - b);
for (const t of m.outputs) {
  const v = outs[t.name];
  await writeFile(job.outputs[t.name], new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
}
console.log(JSON.stringify({ load_ms: loadMs, run_ms: times.length ? times[times.length >> 1] : null }));
