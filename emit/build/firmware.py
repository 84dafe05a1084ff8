"""Firmware builder for Cortex-M boards (targets/<board>.toml with kind = "firmware").

The C folder becomes firmware/lib<prefix>.a (cross-compiled with arm-none-eabi-gcc: link it into your own firmware)
and a small test firmware firmware/<prefix>.elf (templates in targets/firmware/) that QEMU runs over semihosting:
it reads inputs.bin from QEMU's working directory, runs the model once, prints the outputs and writes them raw to
outputs.bin. The flash/RAM report comes from `arm-none-eabi-size -A` on that .elf, whose linker script gives the
model's code, weights, arena and I/O buffers sections of their own. `run_firmware()` runs the .elf in
qemu-system-arm on given inputs and returns the outputs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from .. import __version__
from ..errors import EmitError
from ..ir import c_type
from ..resources import asset_dir
from ..targets import target_config
from ..wasm_runner import bind_feeds

# weight arrays of model.c are `static const ... w<n>_<name>`; with -fdata-sections each is section .rodata.w<n>_*
WEIGHT_SYMBOL = re.compile(r"^w\d+_")
# sections that take no memory on the target (debug info, attributes)
_NON_ALLOC = (".debug", ".comment", ".ARM.attributes", ".note", ".stab", ".gnu")
_STACK_LINE = re.compile(r"^stack: peak (\d+) bytes during \w+, (\d+) bytes for the whole firmware", re.M)
_OVERFLOW = re.compile(r"region `?'?(\w+)'? overflowed by (\d+) bytes")


class FirmwareError(EmitError):
    """The test firmware failed under QEMU (a fault, a timeout, a missing tool); the message holds QEMU's output."""


@dataclass
class Toolchain:
    gcc: str
    ar: str
    size: str
    nm: str


@dataclass
class FirmwareRun:
    """One run of the test firmware in QEMU."""

    outputs: dict[str, np.ndarray]
    console: str  # what the firmware printed over semihosting (and anything QEMU said)
    stack_peak: int | None  # bytes of stack the whole firmware used (painted words overwritten)
    stack_run_peak: int | None  # the same during the model's run function alone (measured from the stack's top)
    seconds: float
    returncode: int = 0


# ---------------------------------------------------------------------------------------------------------------------
# target settings and tools


def firmware_config(target: str) -> dict:
    """targets/<target>.toml, checked: a firmware target needs its flags, memory map and QEMU settings."""
    cfg = target_config(target)
    where = f"targets/{target}.toml"
    if cfg.get("kind") != "firmware":
        raise EmitError(f"target '{target}' is not a firmware target ({where} has kind = '{cfg.get('kind')}')")
    required = ["compiler", "arch_flags", "cflags", "ldflags", "stack_bytes", "heap_bytes",
                "flash.origin", "flash.size", "ram.origin", "ram.size"]
    if "qemu" in cfg:  # optional: a board QEMU cannot emulate only gets the library, the .elf and the report
        required += ["qemu.machine", "qemu.cpu"]
    for key in required:
        node: Any = cfg
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise EmitError(f"{where}: missing setting '{key}'")
            node = node[part]
    return cfg


def find_toolchain(cfg: dict) -> Toolchain:
    hint = cfg.get("install_hint", "apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi")
    gcc = shutil.which(cfg["compiler"])
    if gcc is None:
        raise EmitError(f"{cfg['compiler']} not found (the {cfg['name']} target cross-compiles with it): {hint}")
    prefix = gcc[: -len("gcc")] if gcc.endswith("gcc") else gcc + "-"
    tools = {}
    for tool in ("ar", "size", "nm"):
        path = shutil.which(prefix + tool) or shutil.which(Path(prefix + tool).name)
        if path is None:
            raise EmitError(f"{Path(prefix).name}{tool} not found beside {gcc}: {hint}")
        tools[tool] = path
    # newlib (libc, libm and the rdimon semihosting syscalls) is a separate Debian package
    probe = subprocess.run([gcc, *cfg["arch_flags"], "-print-file-name=librdimon.a"], capture_output=True, text=True)
    if probe.returncode != 0 or not Path(probe.stdout.strip()).is_absolute():
        raise EmitError(f"newlib for {cfg['compiler']} (librdimon.a) is missing: {hint}")
    return Toolchain(gcc, tools["ar"], tools["size"], tools["nm"])


def find_qemu(cfg: dict) -> str | None:
    return shutil.which(cfg["qemu"].get("binary", "qemu-system-arm")) if "qemu" in cfg else None


def qemu_command(cfg: dict, elf: str) -> list[str]:
    q = cfg.get("qemu")
    if q is None:
        raise FirmwareError(f"target '{cfg['name']}' has no [qemu] section in its TOML file: it cannot run under QEMU")
    return [q.get("binary", "qemu-system-arm"), "-M", q["machine"], "-cpu", q["cpu"], "-nographic",
            "-semihosting-config", "enable=on,target=native", "-kernel", elf]


# ---------------------------------------------------------------------------------------------------------------------
# building


def _c_string(s: str) -> str:
    """A C string literal's body: printable ASCII kept, everything else as octal escapes."""
    out = []
    for b in str(s).encode():
        ch = chr(b)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 32 <= b < 127 and ch != "?":  # '?' escaped too: no trigraphs
            out.append(ch)
        else:
            out.append(f"\\{b:03o}")
    return "".join(out)


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(asset_dir("targets") / "firmware")),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["c_string"] = _c_string
    return env


def _itemsize(dtype: str) -> int:
    return np.dtype(dtype).itemsize


def io_bytes(info: dict) -> int:
    """Bytes of the firmware's input and output buffers (each 16-aligned)."""
    return sum(-(-t["size"] * _itemsize(t["dtype"]) // 16) * 16 for t in info["inputs"] + info["outputs"])


def check_fits(info: dict, cfg: dict) -> None:
    """Refuse a model that cannot fit the board before spending time compiling it."""
    target, flash, ram = cfg["name"], int(cfg["flash"]["size"]), int(cfg["ram"]["size"])
    where = f"targets/{target}.toml"
    if info["weight_bytes"] > flash:
        raise EmitError(f"model '{info['prefix']}' does not fit {target}: its weights take {info['weight_bytes']:,} bytes, "
                        f"the board's flash is {flash:,} bytes ({where} [flash] size)")
    need = {"arena": info["arena_bytes"], "input/output buffers": io_bytes(info), "stack": int(cfg["stack_bytes"]),
            "heap": int(cfg["heap_bytes"])}
    if sum(need.values()) > ram:
        parts = " + ".join(f"{k} {v:,}" for k, v in need.items())
        raise EmitError(f"model '{info['prefix']}' does not fit {target}: RAM needed {sum(need.values()):,} bytes ({parts}), "
                        f"the board's RAM is {ram:,} bytes ({where} [ram] size)")


def _first_error(text: str) -> str:
    lines = [ln for ln in text.splitlines() if "error" in ln.lower()] or text.strip().splitlines()[-1:] or ["(no output)"]
    return lines[0][:400]


def _compile(tc: Toolchain, flags: list[str], src: str, obj: str, cwd: Path) -> list[str]:
    proc = subprocess.run([tc.gcc, *flags, "-c", src, "-o", obj], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise EmitError(f"firmware build failed compiling {Path(src).name}: {_first_error(proc.stderr + proc.stdout)}")
    return [ln for ln in proc.stderr.splitlines() if "warning:" in ln]


def render_firmware_sources(fw: Path, info: dict, cfg: dict) -> list[str]:
    """Write main.c, startup.c, firmware.h and link.ld into fw; returns the C files."""
    env = _env()

    def tensor(t: dict) -> dict:
        # float16, bfloat16, float8, int4, ... are bit patterns to the firmware (printed and filled as unsigned)
        kind = "u" if np.dtype(t["dtype"]).kind == "V" or np.dtype(t["dtype"]) == np.float16 else np.dtype(t["dtype"]).kind
        return {**t, "ctype": c_type(t["dtype"]), "kind": kind}

    ctx = {
        "prefix": info["prefix"],
        "PREFIX": info["prefix"].upper(),
        "version": __version__,
        "target": cfg["name"],
        "cpu": cfg.get("cpu", cfg["name"]),
        "run": info["functions"]["run"],
        "arena_bytes": info["arena_bytes"],
        "inputs": [tensor(t) for t in info["inputs"]],
        "outputs": [tensor(t) for t in info["outputs"]],
        "enable_fpu": bool(cfg.get("enable_fpu", True)),
        "flash": {k: int(v) for k, v in cfg["flash"].items()},
        "ram": {k: int(v) for k, v in cfg["ram"].items()},
        "stack_bytes": int(cfg["stack_bytes"]),
        "heap_bytes": int(cfg["heap_bytes"]),
    }
    for tpl, name in (("main.c.j2", "main.c"), ("startup.c.j2", "startup.c"), ("firmware.h.j2", "firmware.h"),
                      ("link.ld.j2", "link.ld")):
        (fw / name).write_text(env.get_template(tpl).render(**ctx))
    return ["main.c", "startup.c"]


def size_sections(tc: Toolchain, path: Path) -> list[tuple[str, int, int]]:
    """(section, size, address) as `size -A` reports them, memory-occupying sections only."""
    proc = subprocess.run([tc.size, "-A", "-d", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise EmitError(f"{Path(tc.size).name} failed on {path.name}: {_first_error(proc.stderr)}")
    rows = []
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit() and not parts[0].startswith(_NON_ALLOC):
            rows.append((parts[0], int(parts[1]), int(parts[2])))
    return rows


def weight_symbols(tc: Toolchain, lib: Path) -> dict[str, int]:
    """The model's weight arrays in the library and their sizes (`nm --size-sort -S`)."""
    proc = subprocess.run([tc.nm, "--size-sort", "-S", str(lib)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise EmitError(f"{Path(tc.nm).name} failed on {lib.name}: {_first_error(proc.stderr)}")
    out = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "rRdD" and WEIGHT_SYMBOL.match(parts[3]):
            out[parts[3]] = int(parts[1], 16)
    return out


def memory_usage(sections: list[tuple[str, int, int]], cfg: dict) -> dict:
    """Flash and RAM use of the linked firmware by category, from its sections."""
    f0, fsize = int(cfg["flash"]["origin"]), int(cfg["flash"]["size"])
    r0, rsize = int(cfg["ram"]["origin"]), int(cfg["ram"]["size"])
    by = {name: size for name, size, _ in sections}
    flash_secs = {n: s for n, s, a in sections if f0 <= a < f0 + fsize and s}
    ram_secs = {n: s for n, s, a in sections if r0 <= a < r0 + rsize and s}
    flash_secs[".data (initial values)"] = by.get(".data", 0)  # .data is stored in flash and copied to RAM
    model_code = by.get(".model_text", 0)
    weights = by.get(".weights", 0)
    code = sum(s for n, s in flash_secs.items() if n in (".vectors", ".text", ".ARM.extab", ".ARM.exidx", ".preinit_array",
                                                         ".init_array", ".fini_array"))
    flash_used = sum(flash_secs.values())
    ram_used = sum(ram_secs.values())
    arena, io, stack, heap = by.get(".arena", 0), by.get(".io_buffers", 0), by.get(".stack", 0), by.get(".heap", 0)
    return {
        "flash": {"size": fsize, "used": flash_used, "weights": weights, "model_code": model_code,
                  "model_rodata": by.get(".model_rodata", 0), "other_code": code,
                  "other_rodata_data": flash_used - weights - model_code - by.get(".model_rodata", 0) - code},
        "ram": {"size": rsize, "used": ram_used, "arena": arena, "io_buffers": io, "stack": stack, "heap": heap,
                "data_bss": ram_used - arena - io - stack - heap},
        "sections": {n: s for n, s, _ in sections},
    }


def _pct(a: int, b: int) -> str:
    return f"{100.0 * a / b:.1f}%" if b else "-"


def format_report(fw: dict, info: dict, cfg: dict, out: Path) -> str:
    f, r = fw["flash"], fw["ram"]
    p = info["prefix"]
    w = 12
    lines = [
        f"built {out}/firmware/ for {cfg['name']} ({cfg.get('cpu', cfg['name'])}, "
        f"{' '.join(x for x in cfg['cflags'] if x.startswith('-O'))}): {Path(fw['library']).name} (the model, to link into "
        f"your firmware) and {Path(fw['elf']).name} (QEMU test firmware)",
        f"memory of {Path(fw['elf']).name} as {Path(fw['tools']['size']).name} -A sees it:",
        f"  flash {f['used']:>{w},} of {f['size']:,} bytes ({_pct(f['used'], f['size'])})",
        f"    weights        {f['weights']:>{w},}  .weights: the w*_ arrays ({fw['weight_symbols']} symbols, "
        f"{fw['weight_symbol_bytes']:,} bytes by nm; manifest weight_bytes {info['weight_bytes']:,})",
        f"    model code     {f['model_code']:>{w},}  .model_text: {p}_run and the kernels ({', '.join(info['sources'])})",
        f"    model consts   {f['model_rodata']:>{w},}  .model_rodata",
        f"    other code     {f['other_code']:>{w},}  .text: test firmware, newlib (printf, semihosting), libm, libgcc",
        f"    other consts   {f['other_rodata_data']:>{w},}  .data initial values and the rest",
        f"  RAM   {r['used']:>{w},} of {r['size']:,} bytes ({_pct(r['used'], r['size'])})",
        f"    arena          {r['arena']:>{w},}  .arena ({p.upper()}_ARENA_BYTES)",
        f"    I/O buffers    {r['io_buffers']:>{w},}  .io_buffers: inputs and outputs",
    ]
    peak, run_peak = fw.get("stack_peak"), fw.get("stack_run_peak")
    if peak is not None and run_peak is not None:
        peak_text = f"measured in QEMU: peak {run_peak:,} during {info['functions']['run']}, {peak:,} for the whole firmware"
    else:
        peak_text = fw.get("stack_note", "peak not measured")
    expanded = info.get("weights", {}).get("expanded_bytes", 0)  # float32 copies of f16/int8-stored weights
    lines += [
        f"    stack          {r['stack']:>{w},}  .stack ({peak_text})",
        f"    heap           {r['heap']:>{w},}  .heap (newlib stdio of the test firmware; the model never allocates)",
        f"    data + bss     {r['data_bss']:>{w},}  .data, .bss (newlib"
        + (f"; {expanded:,} of them the float32 copies of the {info['weights']['dtype']}-stored weights)" if expanded else ")"),
        f"  without the test firmware, the model needs flash {f['weights'] + f['model_code'] + f['model_rodata']:,} "
        f"(+ libm) and RAM {r['arena']:,} (arena) + {r['io_buffers']:,} (I/O)"
        + (f" + {expanded:,} (expanded weights)" if expanded else "") + " + stack",
    ]
    if fw["qemu"]:
        lines.append(f"  run it: cd {out}/firmware && {' '.join(fw['qemu'])}  (reads inputs.bin if present, writes outputs.bin)")
    if fw["warnings"]:
        lines.append(f"  {len(fw['warnings'])} compiler warning(s), first: {fw['warnings'][0]}")
    return "\n".join(lines)


def write_makefile(fw: Path, info: dict, cfg: dict, tc: Toolchain) -> None:
    srcs = " ".join(f"../{s}" for s in info["sources"])
    text = f"""# Rebuilds lib{info['prefix']}.a and {info['prefix']}.elf for {cfg['name']} as onnx-emit {__version__} did.
# `make run` runs the test firmware in QEMU (it reads inputs.bin here if present and writes outputs.bin).
CC = {Path(tc.gcc).name}
AR = {Path(tc.ar).name}
ARCH = {' '.join(cfg['arch_flags'])}
CFLAGS = $(ARCH) {' '.join(cfg['cflags'])} -I..
LDFLAGS = $(ARCH) {' '.join(cfg['ldflags'])} -T link.ld -Wl,-Map={info['prefix']}.map
LIBS = {' '.join(cfg.get('libs', []))}
MODEL_SRCS = {srcs}
MODEL_OBJS = $(MODEL_SRCS:../%.c=obj/%.o)

all: {info['prefix']}.elf

lib{info['prefix']}.a: $(MODEL_OBJS)
\t$(AR) rcs $@ $^

obj/%.o: ../%.c
\t@mkdir -p obj
\t$(CC) $(CFLAGS) -c -o $@ $<

obj/%.o: %.c firmware.h
\t@mkdir -p obj
\t$(CC) $(CFLAGS) -c -o $@ $<

{info['prefix']}.elf: obj/main.o obj/startup.o lib{info['prefix']}.a link.ld
\t$(CC) $(LDFLAGS) -o $@ obj/main.o obj/startup.o lib{info['prefix']}.a $(LIBS)

run: {info['prefix']}.elf
\t{' '.join(qemu_command(cfg, info['prefix'] + '.elf')) if 'qemu' in cfg else '@echo "no [qemu] section for this board"'}

clean:
\trm -rf obj lib{info['prefix']}.a {info['prefix']}.elf {info['prefix']}.map

.PHONY: all run clean
"""
    (fw / "Makefile").write_text(text)


def build_firmware(out: Path, target: str, quiet: bool = True) -> dict:
    """Cross-compile out/'s C folder for `target` into out/firmware/lib<prefix>.a and the test firmware
    out/firmware/<prefix>.elf; record manifest["firmware"] (sizes, report) and return it."""
    out = Path(out)
    cfg = firmware_config(target)
    info = json.loads((out / "manifest.json").read_text())
    if not info["inputs"]:
        raise EmitError(f"the {target} test firmware needs a model with at least one input")
    check_fits(info, cfg)
    tc = find_toolchain(cfg)
    t0 = time.perf_counter()
    fw = out / "firmware"
    if fw.exists():
        shutil.rmtree(fw)
    (fw / "obj").mkdir(parents=True)
    prefix = info["prefix"]
    firmware_srcs = render_firmware_sources(fw, info, cfg)
    flags = [*cfg["arch_flags"], *cfg["cflags"], "-I.."]
    jobs = [(f"../{s}", f"obj/{Path(s).stem}.o") for s in info["sources"]]
    jobs += [(s, f"obj/{Path(s).stem}.o") for s in firmware_srcs]  # the names the Makefile uses
    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        warnings = [w for ws in pool.map(lambda j: _compile(tc, flags, j[0], j[1], fw), jobs) for w in ws]
    lib = fw / f"lib{prefix}.a"
    model_objs = [o for _, o in jobs[: len(info["sources"])]]
    proc = subprocess.run([tc.ar, "rcs", lib.name, *model_objs], cwd=fw, capture_output=True, text=True)
    if proc.returncode != 0:
        raise EmitError(f"firmware build failed creating {lib.name}: {_first_error(proc.stderr)}")
    elf = fw / f"{prefix}.elf"
    link = [tc.gcc, *cfg["arch_flags"], *cfg["ldflags"], "-T", "link.ld", f"-Wl,-Map={prefix}.map", "-o", elf.name,
            *[o for _, o in jobs[len(info["sources"]):]], lib.name, *cfg.get("libs", [])]
    proc = subprocess.run(link, cwd=fw, capture_output=True, text=True)
    if proc.returncode != 0:
        text = proc.stderr + proc.stdout
        m = _OVERFLOW.search(text)
        if m:
            region = m.group(1).lower()
            size = int(cfg["ram" if region == "ram" else "flash"]["size"])
            what = f"weights {info['weight_bytes']:,} + code and data" if region == "flash" else \
                f"arena {info['arena_bytes']:,} + stack, heap and buffers"
            raise EmitError(f"model '{prefix}' does not fit {target}: the firmware needs {size + int(m.group(2)):,} bytes of "
                            f"{region} ({what}), the board has {size:,} (targets/{target}.toml [{region}] size)")
        raise EmitError(f"firmware link failed: {_first_error(text)}")
    warnings += [ln for ln in proc.stderr.splitlines() if "warning:" in ln]
    weights = weight_symbols(tc, lib)
    usage = memory_usage(size_sections(tc, elf), cfg)
    record: dict[str, Any] = {
        "target": target,
        "cpu": cfg.get("cpu", target),
        "library": f"firmware/{lib.name}",
        "elf": f"firmware/{elf.name}",
        "qemu": qemu_command(cfg, elf.name) if "qemu" in cfg else None,
        **usage,
        "weight_symbols": len(weights),
        "weight_symbol_bytes": sum(weights.values()),
        "stack_peak": None,
        "stack_run_peak": None,
        "warnings": warnings[:20],
        "build_seconds": round(time.perf_counter() - t0, 2),
        "tools": {"gcc": tc.gcc, "size": tc.size, "nm": tc.nm},
    }
    info["firmware"] = record
    (out / "manifest.json").write_text(json.dumps(info, indent=2) + "\n")
    write_makefile(fw, info, cfg, tc)
    if cfg.get("qemu", {}).get("measure_stack", False):
        if find_qemu(cfg) is None:
            record["stack_note"] = f"peak not measured: {cfg['qemu'].get('install_hint', 'install qemu-system-arm')}"
        else:
            run = run_qemu(out, None)
            record["stack_peak"] = run.stack_peak
            record["stack_run_peak"] = run.stack_run_peak
            record["qemu_seconds"] = round(run.seconds, 2)
    record["report"] = format_report(record, info, cfg, out)
    (out / "manifest.json").write_text(json.dumps(info, indent=2) + "\n")
    if not quiet:
        print(record["report"])
    return record


# ---------------------------------------------------------------------------------------------------------------------
# running under QEMU


def _manifest(out: Path) -> dict:
    mf = out / "manifest.json"
    if not mf.is_file():
        raise ValueError(f"{out}: no manifest.json; export the model there first")
    info = json.loads(mf.read_text())
    if not info.get("firmware"):
        raise ValueError(f"{out}: no firmware built there; export with a firmware target (--target cortex-m4)")
    return info


def _input_bytes(info: dict, feeds: dict[str, Any]) -> bytes:
    """The inputs as the firmware reads them: raw little-endian, in the manifest's order; checked first."""
    if not isinstance(feeds, dict):
        raise TypeError(f"feeds must be a dict {{input name: array}}, got {type(feeds).__name__}")
    feeds = bind_feeds([t["name"] for t in info["inputs"]], (feeds,), {})
    chunks = []
    for t in info["inputs"]:
        value, dt = feeds[t["name"]], np.dtype(t["dtype"])
        if isinstance(value, np.ndarray) or hasattr(value, "__array_interface__"):
            arr = np.asarray(value)
            if arr.dtype != dt:
                raise ValueError(f"input '{t['name']}': expected dtype {dt}, got {arr.dtype}")
        else:
            try:
                arr = np.asarray(value, dtype=dt)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"input '{t['name']}': cannot convert {type(value).__name__} to {dt}: {exc}") from None
        if list(arr.shape) != list(t["shape"]):
            raise ValueError(f"input '{t['name']}': expected shape {list(t['shape'])}, got {list(arr.shape)}")
        chunks.append(np.ascontiguousarray(arr, dtype=dt.newbyteorder("<")).tobytes())
    return b"".join(chunks)


def run_qemu(out: Path, feeds: dict[str, Any] | None, timeout: float | None = None) -> FirmwareRun:
    """Run out/'s test firmware once in QEMU: on `feeds` (written to inputs.bin), or on its built-in input when None."""
    out = Path(out)
    info = _manifest(out)
    fwinfo = info["firmware"]
    cfg = firmware_config(fwinfo["target"])
    data = None if feeds is None else _input_bytes(info, feeds)
    qemu_command(cfg, "")  # a board without a [qemu] section: a clear error
    qemu = find_qemu(cfg)
    if qemu is None:
        raise FirmwareError(f"{cfg['qemu'].get('binary', 'qemu-system-arm')} not found: "
                            f"{cfg['qemu'].get('install_hint', 'apt-get install qemu-system-arm')}")
    elf = (out / fwinfo["elf"]).resolve()
    if not elf.is_file():
        raise FirmwareError(f"{elf} is missing; export the model again with --target {fwinfo['target']}")
    timeout = float(timeout if timeout is not None else cfg["qemu"].get("timeout_seconds", 300))
    cmd = [qemu, *qemu_command(cfg, str(elf))[1:]]
    with tempfile.TemporaryDirectory(prefix="emit-qemu-") as tmp:
        cwd = Path(tmp)
        if data is not None:
            (cwd / "inputs.bin").write_bytes(data)
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            console = ((exc.stdout or b"") + (exc.stderr or b"")).decode(errors="replace")
            raise FirmwareError(f"{elf.name} did not finish in {timeout:g} s under {' '.join(cmd[:5])}; its output:\n"
                                f"{_tail(console)}") from None
        seconds = time.perf_counter() - t0
        console = (proc.stdout + proc.stderr).decode(errors="replace")
        if "*** fault" in console or proc.returncode not in (0, 1) or "wrote outputs.bin" not in console:
            raise FirmwareError(f"{elf.name} failed under QEMU (exit status {proc.returncode}); its output:\n{_tail(console)}")
        raw = (cwd / "outputs.bin").read_bytes()
    outputs, pos = {}, 0
    for t in info["outputs"]:
        dt = np.dtype(t["dtype"]).newbyteorder("<")
        n = t["size"] * dt.itemsize
        if pos + n > len(raw):
            raise FirmwareError(f"{elf.name} wrote {len(raw)} bytes to outputs.bin, expected at least {pos + n}")
        outputs[t["name"]] = np.frombuffer(raw[pos:pos + n], dtype=dt).astype(dt.newbyteorder("="))\
            .reshape(t["shape"])
        pos += n
    m = _STACK_LINE.search(console)
    peaks = (int(m.group(2)), int(m.group(1))) if m else (None, None)
    return FirmwareRun(outputs, console, *peaks, seconds, proc.returncode)


def _tail(text: str, lines: int = 30) -> str:
    kept = text.strip().splitlines()[-lines:]
    return "\n".join(kept) if kept else "(no output)"


def run_firmware(out: Path, feeds: dict[str, Any], timeout: float | None = None) -> dict[str, np.ndarray]:
    """Run out/'s test firmware in qemu-system-arm on `feeds` ({input name: array}); returns {output name: array}.
    Wrong names, shapes or dtypes raise ValueError; a fault or a timeout raises FirmwareError with QEMU's output;
    a model that reports a runtime value out of range raises RuntimeError, as the native runner does."""
    run = run_qemu(Path(out), feeds, timeout=timeout)
    if run.returncode == 1:
        raise RuntimeError(
            "model returned error code 1: an input value was out of range "
            "(an index past a table's end, or a runtime shape that disagrees with the compiled one)"
        )
    return run.outputs
