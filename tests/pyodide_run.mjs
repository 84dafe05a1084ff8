// Runs tests/wheel_cases.py inside Pyodide under Node, offline: Pyodide from the local npm package (no CDN),
// the model wheels installed from local files.
//   node tests/pyodide_run.mjs PYODIDE_DIR wheel_cases.py job.json WHEEL...
// Prints one JSON line: {"pyodide_load_ms", "install_ms", "results": <wheel_cases.main(job)>}.
// Pyodide's own stdout/stderr go to stderr so stdout stays JSON.
import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";

const [pyodideDir, casesFile, jobFile, ...wheels] = process.argv.slice(2);
const indexURL = resolve(pyodideDir) + "/";
const { loadPyodide } = await import(pathToFileURL(resolve(indexURL, "pyodide.mjs")).href);

const t0 = performance.now();
const py = await loadPyodide({
  indexURL,
  stdout: (s) => process.stderr.write(s + "\n"),
  stderr: (s) => process.stderr.write(s + "\n"),
});
const t1 = performance.now();
for (const whl of wheels) {
  const errors = [];
  await py.loadPackage(resolve(whl), { messageCallback: () => {}, errorCallback: (m) => errors.push(m) });
  if (errors.length) throw new Error(`loadPackage(${whl}): ${errors.join("; ")}`);
}
const t2 = performance.now();
py.FS.writeFile("/tmp/job.json", await readFile(jobFile, "utf8"));
py.runPython(await readFile(casesFile, "utf8"));
const results = await py.runPythonAsync("import json\njson.dumps(await main('/tmp/job.json'))");
console.log(`{"pyodide_load_ms": ${t1 - t0}, "install_ms": ${t2 - t1}, "results": ${results}}`);
