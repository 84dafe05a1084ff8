"""TfIdfVectorizer on integer tokens (string pools need string tensors, which are not supported).

The pool of n-grams becomes a trie at compile time, laid out as tables: node k's children are
child_key/child_node[first[k] .. first[k + 1]) sorted by key, and id[k] is the n-gram id ending there
(0: none). The C walks it from every start position and skip distance exactly as onnxruntime and
onnx's reference do, counting into the output row, then weighs the counts (TF, IDF, TFIDF)."""

from __future__ import annotations

import numpy as np

from .common import literal
from .registry import Lowering, op


def _trie(ctx: Lowering, pool: list[int], counts: list[int], lo: int, hi: int) -> tuple[list[dict], int]:
    """Trie nodes ({'children': {key: node}, 'id': int}) of the pool's n-grams of size lo..hi; ids run
    over all pool n-grams in order (sizes outside lo..hi still take ids), starting at 1."""
    nodes: list[dict] = [{"children": {}, "id": 0}]
    ngram_id, size = 1, 1
    for i, start in enumerate(counts):
        end = counts[i + 1] if i + 1 < len(counts) else len(pool)
        items = end - start
        if items > 0:
            if items % size:
                ctx.fail(f"pool section {i} has {items} items, not a multiple of the n-gram size {size}")
            n = items // size
            if lo <= size <= hi:
                for g in range(n):
                    cur = 0
                    for j in range(size):
                        key = pool[start + g * size + j]
                        nxt = nodes[cur]["children"].get(key)
                        if nxt is None:
                            nxt = len(nodes)
                            nodes.append({"children": {}, "id": 0})
                            nodes[cur]["children"][key] = nxt
                        cur = nxt
                    nodes[cur]["id"] = ngram_id
                    ngram_id += 1
            else:
                ngram_id += n
        size += 1
    return nodes, ngram_id


def _table(name: str, ctype: str, values, dtype) -> str:
    vals = list(values) or [0]
    return f"static const {ctype} {name}[{len(vals)}] = {{ {', '.join(literal(v, dtype) for v in vals)} }};"


@op("TfIdfVectorizer")
def lower_tfidf(ctx: Lowering) -> None:
    x, y = ctx.input(0), ctx.output(0)
    if ctx.attr("pool_strings"):
        ctx.fail("pool_strings needs string tensors, which are not supported")
    if x.dtype.kind not in "iu":
        ctx.fail(f"input dtype {x.dtype.name} is not supported (int32/int64 tokens)")
    lo, hi = int(ctx.attr("min_gram_length")), int(ctx.attr("max_gram_length"))
    skip = int(ctx.attr("max_skip_count"))
    mode = str(ctx.attr("mode"))
    pool = [int(v) for v in ctx.attr("pool_int64s") or []]
    counts = [int(v) for v in ctx.attr("ngram_counts") or []]
    indexes = [int(v) for v in ctx.attr("ngram_indexes") or []]
    weights = [float(v) for v in ctx.attr("weights") or []]
    if mode not in ("TF", "IDF", "TFIDF"):
        ctx.fail(f"mode '{mode}' is not TF, IDF or TFIDF")
    if not 1 <= lo <= hi:
        ctx.fail(f"gram lengths {lo}..{hi} are not valid")
    width = max(indexes) + 1 if indexes else 0
    if len(x.shape) == 1:
        rows, c = 1, x.shape[0]
    elif len(x.shape) == 2:
        rows, c = x.shape
    else:
        ctx.fail(f"input must be [C] or [N, C], got {x.shape}")
    if y.size != rows * width or y.dtype != np.float32:
        ctx.fail(f"output {y.shape} is not float [{rows}, {width}]")
    if y.size == 0:
        return
    nodes, last_id = _trie(ctx, pool, counts, lo, hi)
    if last_id - 1 > len(indexes):
        ctx.fail(f"{last_id - 1} n-grams in the pool, {len(indexes)} ngram_indexes")
    # children of every node, sorted by key, in one flat table
    first, keys, kids = [0], [], []
    for nd in nodes:
        for key in sorted(nd["children"]):
            keys.append(key)
            kids.append(nd["children"][key])
        first.append(len(keys))
    out_index = [0] + indexes  # by n-gram id
    yp = ctx.ptr(y)
    cnt = ctx.scratch(4 * rows * width, np.uint32)
    code = [
        _table("tf_first", "uint32_t", first, np.uint32),
        _table("tf_key", "int64_t", keys, np.int64),
        _table("tf_kid", "uint32_t", kids, np.uint32),
        _table("tf_id", "uint32_t", [nd["id"] for nd in nodes], np.uint32),
        _table("tf_out", "uint32_t", out_index, np.uint32),
        f"for (size_t i = 0; i < {rows * width}; ++i) {cnt}[i] = 0;",
    ]
    if len(nodes) > 1 and c > 0:
        code += [
            f"for (size_t b = 0; b < {rows}; ++b) {{",
            f"    const {x.ctype} *xr = {ctx.ptr(x)} + b*{c};",
            f"    uint32_t *cr = {cnt} + b*{width};",
            f"    size_t start_size = {lo};",
            f"    for (size_t sd = 1; sd <= {skip + 1}; ++sd) {{",
            f"        for (size_t s = 0; s < {c}; ++s) {{",
            f"            if (s + sd * (start_size - 1) >= {c}) break;",
            "            uint32_t nd = 0;",
            "            size_t size = 1, item = s;",
            f"            while (tf_first[nd] < tf_first[nd + 1] && size <= {hi} && item < {c}) {{",
            "                const int64_t v = (int64_t)xr[item];",
            "                uint32_t lo_ = tf_first[nd], hi_ = tf_first[nd + 1];",
            "                while (lo_ < hi_) { const uint32_t mid = lo_ + (hi_ - lo_) / 2; if (tf_key[mid] < v) lo_ = mid + 1; else hi_ = mid; }",
            "                if (lo_ == tf_first[nd + 1] || tf_key[lo_] != v) break;",
            "                nd = tf_kid[lo_];",
            "                if (size >= start_size && tf_id[nd] != 0) ++cr[tf_out[tf_id[nd]]];",
            "                ++size;",
            "                item += sd;",
            "            }",
            "        }",
            "        if (start_size == 1) {",
            "            ++start_size;",
            f"            if (start_size > {hi}) break;",
            "        }",
            "    }",
            "}",
        ]
    if mode == "TF" or (mode == "TFIDF" and not weights):
        code.append(f"for (size_t i = 0; i < {rows * width}; ++i) {yp}[i] = (float){cnt}[i];")
    elif mode == "IDF" and not weights:
        code.append(f"for (size_t i = 0; i < {rows * width}; ++i) {yp}[i] = {cnt}[i] > 0 ? 1.0f : 0.0f;")
    else:
        # weights[k] belongs to the k-th n-gram of the pool (onnxruntime), which counts into ngram_indexes[k]
        if len(weights) < len(indexes) or len(set(indexes)) != len(indexes):
            ctx.fail(f"{len(weights)} weights for {len(indexes)} n-grams (or an output index repeats)")
        w_out = [0.0] * width
        for k, o in enumerate(indexes):
            w_out[o] = weights[k]
        code.append(_table("tf_w", "float", w_out, np.float32))
        expr = f"{cnt}[b*{width} + i] > 0 ? tf_w[i] : 0.0f" if mode == "IDF" else f"tf_w[i] * (float){cnt}[b*{width} + i]"
        code.append(f"for (size_t b = 0; b < {rows}; ++b) for (size_t i = 0; i < {width}; ++i) {yp}[b*{width} + i] = {expr};")
    ctx.emit("\n".join(code))
