"""Memory probe for a soak server (only with SOAK_PROBE_DIR set, only the soak's server): every SOAK_PROBE_EVERY s,
one JSON line: RSS split by mapping kind, glibc mallinfo2, pymalloc blocks, threads, gc type counts vs the first
sample after SOAK_PROBE_BASE s. SOAK_PROBE_TRACE=N also runs tracemalloc with N frames (heavy)."""

import os
import sys

if os.environ.get("SOAK_PROBE_DIR") and "soak-data" in " ".join(sys.argv):
    import collections
    import gc
    import json
    import re
    import threading
    import time

    _dir = os.environ["SOAK_PROBE_DIR"]
    _base_at = float(os.environ.get("SOAK_PROBE_BASE", "60"))
    _every = float(os.environ.get("SOAK_PROBE_EVERY", "60"))

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tools/: mallinfo
    from mallinfo import mallinfo_mb

    def _mallinfo():
        return mallinfo_mb()

    def _smaps():
        g = collections.Counter()
        k = None
        n64 = 0
        for line in open("/proc/self/smaps"):
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                parts = line.split()
                s, e = (int(x, 16) for x in parts[0].split("-"))
                name = parts[5] if len(parts) > 5 else ""
                mb = (e - s) >> 20
                k = (
                    "heap"
                    if name == "[heap]"
                    else (
                        "file"
                        if "/" in name
                        else (
                            "arena64"
                            if mb >= 60 and not name
                            else ("anon_mid" if mb >= 1 and not name else "anon_small")
                        )
                    )
                )
                n64 += k == "arena64"
            elif line.startswith("Rss:"):
                g[k] += int(line.split()[1])
        out = {key: round(v / 1024, 1) for key, v in g.items()}
        out["rss"] = round(sum(g.values()) / 1024, 1)
        out["n64"] = n64
        return out

    def _types():
        return collections.Counter(type(o).__name__ for o in gc.get_objects())

    def _run():
        t0 = time.monotonic()
        out = open(os.path.join(_dir, f"{os.getpid()}.jsonl"), "w")
        base_types = None
        next_at = _base_at
        while True:
            time.sleep(max(0.0, t0 + next_at - time.monotonic()))
            next_at += _every
            rec = {"t": round(time.monotonic() - t0)} | _smaps() | _mallinfo()
            rec["pyblocks"] = sys.getallocatedblocks()
            rec["threads"] = sorted(
                collections.Counter(re.sub(r"[-_ ]?\d+.*$", "", t.name) for t in threading.enumerate()).items()
            )
            types = _types()
            if base_types is None:
                base_types = types
            else:
                diff = types.copy()
                diff.subtract(base_types)
                rec["types"] = [(k, v) for k, v in diff.most_common(15)]
            out.write(json.dumps(rec) + "\n")
            out.flush()
            del types

    threading.Thread(target=_run, daemon=True, name="soak-probe").start()
