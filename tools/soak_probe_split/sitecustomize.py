"""Memory probe for a soak server, split finer than tools/soak_probe (docs/load-and-faults.md, "What grows").

Put this folder on PYTHONPATH of `tools/bench_faults.py --parts soak`; only the soak's server (argv holds
"soak-data") is probed, and only with SOAK_PROBE_DIR set. Every SOAK_PROBE_EVERY s (30) from SOAK_PROBE_BASE s (60),
one JSON line in SOAK_PROBE_DIR/<pid>.jsonl: RSS by mapping (`weights`: the model's mapped weights file; `file`:
other files; `[heap]`; anonymous mappings by size), smaps_rollup's Rss and Anonymous, glibc's mallinfo2 (`arena`:
heap bytes, `uordblks` in use, `fordblks` free, `hblkhd` mmapped blocks), Python's allocated blocks, SQLite's
memory (`sqlite_mb`, sqlite3_memory_used: its page caches among it), Python threads.
SOAK_PROBE_TRACE=N: tracemalloc with N frames, the top 12 growths since the first sample (heavy: RSS doubles).
Experiments on ONNX Runtime (SOAKX_ORT, words joined by commas): `arena0` (enable_cpu_mem_arena off), `pattern0`
(enable_mem_pattern off), `preload` (the weights made resident right after the session is made)."""

import os
import sys

if os.environ.get("SOAK_PROBE_DIR") and "soak-data" in " ".join(sys.argv):
    import ctypes
    import json
    import threading
    import time

    _dir = os.environ["SOAK_PROBE_DIR"]
    _base_at = float(os.environ.get("SOAK_PROBE_BASE", "60"))
    _every = float(os.environ.get("SOAK_PROBE_EVERY", "30"))
    _trace = int(os.environ.get("SOAK_PROBE_TRACE", "0"))
    _ort = os.environ.get("SOAKX_ORT", "")
    _libc = ctypes.CDLL("libc.so.6", use_errno=True)

    if _ort:
        import onnxruntime as _o

        _Orig = _o.InferenceSession

        class _Patched(_Orig):
            def __init__(self, path, sess_options=None, *a, **k):
                if "arena0" in _ort:
                    sess_options.enable_cpu_mem_arena = False
                if "pattern0" in _ort:
                    sess_options.enable_mem_pattern = False
                super().__init__(path, sess_options, *a, **k)
                if "preload" in _ort:
                    _populate()

        _o.InferenceSession = _Patched

    def _populate():
        _libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        for line in open("/proc/self/maps"):
            if line.rstrip().endswith("model.onnx.data"):
                s, e = (int(x, 16) for x in line.split()[0].split("-"))
                rc = _libc.madvise(s, e - s, 22)  # MADV_POPULATE_READ
                print("populate", hex(s), (e - s) >> 20, "MB rc", rc, ctypes.get_errno(), file=sys.stderr)

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tools/: mallinfo
    from mallinfo import mallinfo_mb

    def _mallinfo():
        return mallinfo_mb(("arena", "hblks", "hblkhd", "uordblks", "fordblks"), digits=2)

    def _smaps():
        out, name, per = {}, "", {}
        for line in open("/proc/self/smaps"):
            first = line.split()
            if "-" in first[0] and len(first[0]) > 8 and ":" not in first[0]:
                name = first[5] if len(first) > 5 else ""
                s, e = (int(x, 16) for x in first[0].split("-"))
                size = e - s
            elif first[0] == "Rss:":
                kb = int(first[1])
                key = (
                    "weights"
                    if name.endswith("model.onnx.data")
                    else "file"
                    if "/" in name
                    else name or ("anon_big" if size >= 60 << 20 else "anon_1m+" if size >= 1 << 20 else "anon_small")
                )
                per[key] = per.get(key, 0) + kb
        out = {k: round(v / 1024, 2) for k, v in per.items()}
        for line in open("/proc/self/smaps_rollup"):
            if line.startswith(("Rss:", "Anonymous:")):
                out["rollup_" + line.split(":")[0]] = round(int(line.split()[1]) / 1024, 2)
        return out

    def _sqlite_used():
        """Every byte SQLite holds in this process (page caches, schemas, statements): sqlite3_memory_used."""
        try:
            lib = ctypes.CDLL("libsqlite3.so.0")
        except OSError:
            return -1
        lib.sqlite3_memory_used.restype = ctypes.c_int64
        return lib.sqlite3_memory_used()

    def _run():
        t0 = time.monotonic()
        out = open(os.path.join(_dir, f"{os.getpid()}.jsonl"), "w")
        next_at, base = _base_at, None
        if _trace:
            import tracemalloc

            tracemalloc.start(_trace)
        while True:
            time.sleep(max(0.0, t0 + next_at - time.monotonic()))
            next_at += _every
            rec = {"t": round(time.monotonic() - t0)} | _smaps() | _mallinfo()
            rec["pyblocks"] = sys.getallocatedblocks()
            rec["sqlite_mb"] = round(_sqlite_used() / 2**20, 2)
            rec["threads"] = threading.active_count()
            if _trace:
                import tracemalloc

                snap = tracemalloc.take_snapshot()
                rec["traced_mb"] = round(tracemalloc.get_traced_memory()[0] / 2**20, 2)
                if base is None:
                    base = snap
                else:
                    stats = snap.compare_to(base, "traceback" if _trace > 1 else "lineno")
                    rec["top"] = [
                        [
                            round(s.size_diff / 2**20, 3),
                            s.count_diff,
                            " < ".join(
                                f"{f.filename.split('site-packages/')[-1].split('soak3/')[-1]}:{f.lineno}"
                                for f in s.traceback[:_trace]
                            ),
                        ]
                        for s in stats[:12]
                    ]
                del snap
            out.write(json.dumps(rec) + "\n")
            out.flush()

    threading.Thread(target=_run, daemon=True, name="soak-probe").start()
