#!/usr/bin/env python3
"""Where the time goes inside one inlined entry point, from a `perf record` of timer samples.

The window update is one function per kernel copy (`Window::pass_avx512`, ...): everything
below it is inlined, so `perf report` puts all samples on that one symbol, and its per-line
view blames the innermost line (`mul_add`, a range's `next`). This script groups the sampled
addresses into hot regions of code (runs of sampled addresses less than 96 bytes apart),
and names each region by the inline chain of its hottest address, read from the binary's
line tables with `addr2line -i`: the caller frames say which product or loop of the cell the
region is (`gemv_packed < forward@gru.rs:86` is the forward recurrent gemv).

Usage:
    perf record -e cpu-clock -F 4999 -g -o perf.data BENCH --spin gru 64
    python3 scripts/perf_regions.py perf.data BENCH [REGIONS]

BENCH is the bench binary (`target/release/deps/peer-*`, built by
`cargo bench --bench peer --no-run` with the bench profile's debug line tables).
"""

import collections
import re
import subprocess
import sys


def samples(data, binary):
    """Leaf addresses of the samples in `binary` (virtual addresses), and the others' names."""
    out = subprocess.run(
        ["perf", "script", "-i", data, "-F", "ip,sym,symoff,dso"],
        capture_output=True, text=True, check=True).stdout
    name = binary.rsplit("/", 1)[-1]
    symbols = {}
    for line in subprocess.run(["nm", "-C", binary], capture_output=True, text=True,
                               check=True).stdout.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[0]:
            symbols.setdefault(parts[2], []).append(int(parts[0], 16))
    leaf, other, total = collections.Counter(), collections.Counter(), 0
    delta, first = None, True
    for line in out.splitlines():
        if not line.strip():
            first = True
            continue
        if not first:
            continue  # a caller frame of the sample above
        first = False
        total += 1
        parts = line.split()
        if name not in line:
            other[re.sub(r"\+0x[0-9a-f]+$", "", parts[1]) if len(parts) > 1 else "?"] += 1
            continue
        ip = int(parts[0], 16)
        if delta is None:
            # perf prints file-relative addresses for a position-independent binary; the
            # offset to the virtual addresses of the line tables comes from one symbol.
            m = re.match(r"(.*)\+0x([0-9a-f]+)$", parts[1])
            if m:
                for addr in symbols.get(m.group(1), []):
                    d = addr - (ip - int(m.group(2), 16))
                    if abs(d) < 0x10000:
                        delta = d
                        break
        leaf[ip + (delta or 0)] += 1
    return leaf, other, total


def chains(binary, addrs):
    """The inline chain (function, file:line), innermost first, of each address."""
    out = subprocess.run(["addr2line", "-i", "-f", "-C", "-a", "-e", binary]
                         + [hex(a) for a in addrs], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    result, cur, i = {}, None, 0
    while i < len(out):
        line = out[i]
        if line.startswith("0x"):
            cur = int(line, 16)
            result[cur] = []
            i += 1
        elif line and i + 1 < len(out):
            func = re.sub(r"<.*?>", "", line).split("::")[-1]
            loc = out[i + 1].split(" ")[0].rsplit("/", 1)[-1]
            if not re.match(r"(core|std|alloc|f32|f64|<)", line):
                result[cur].append(f"{func}@{loc}")
            i += 2
        else:
            i += 1
    return result


def main():
    data, binary = sys.argv[1], sys.argv[2]
    shown = int(sys.argv[3]) if len(sys.argv) > 3 else 12
    leaf, other, total = samples(data, binary)
    regions, cur = [], []
    for a in sorted(leaf):
        if cur and a - cur[-1] > 96:
            regions.append(cur)
            cur = []
        cur.append(a)
    if cur:
        regions.append(cur)
    ranked = sorted(((sum(leaf[a] for a in r), r[0], r[-1], max(r, key=leaf.get))
                     for r in regions), reverse=True)[:shown]
    names = chains(binary, [top for *_, top in ranked])
    for count, lo, hi, top in ranked:
        print(f"{100 * count / total:5.1f}%  {lo:x}-{hi:x}  " + " < ".join(names[top][:7]))
    print("outside the binary: " + ", ".join(
        f"{k} {100 * v / total:.1f}%" for k, v in other.most_common(4)))


if __name__ == "__main__":
    main()
