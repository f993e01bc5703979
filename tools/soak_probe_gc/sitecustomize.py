"""Diagnosis: are the HTTP connection objects of closed connections garbage (cycles awaiting a full collection) or
still referenced? Every 60 s from 120 s: counts, gc.get_count/stats, then gc.collect(), counts again, and for a
survivor the chain of referrers."""

import os
import sys

if os.environ.get("SOAK_PROBE_DIR") and "soak-data" in " ".join(sys.argv):
    import collections
    import gc
    import json
    import threading
    import time

    WATCH = (
        "RequestResponseCycle",
        "socket",
        "_SelectorSocketTransport",
        "Connection",
        "H11Protocol",
        "HttpToolsProtocol",
        "Task",
        "Event",
        "StreamableHTTPServerTransport",
    )

    def _counts():
        c = collections.Counter(type(o).__name__ for o in gc.get_objects())
        return {k: c.get(k, 0) for k in WATCH} | {"_all": sum(c.values())}

    def _chain(obj, depth=4):
        out = []
        seen = {id(obj)}
        for _ in range(depth):
            refs = [
                r
                for r in gc.get_referrers(obj)
                if id(r) not in seen and not isinstance(r, type(sys._getframe())) and r is not out
            ]
            refs = [r for r in refs if type(r).__name__ not in ("list",) or len(r) < 100000]
            if not refs:
                break
            out.append([f"{type(r).__name__}:{str(r)[:100]}" for r in refs[:4]])
            obj = refs[0]
            seen.add(id(obj))
        return out

    def _run():
        t0 = time.monotonic()
        f = open(os.path.join(os.environ["SOAK_PROBE_DIR"], f"{os.getpid()}.gc.jsonl"), "w")
        time.sleep(120)
        while True:
            rec = {
                "t": round(time.monotonic() - t0),
                "gc_count": gc.get_count(),
                "gen2_collections": gc.get_stats()[2]["collections"],
                "before": _counts(),
            }
            t = time.perf_counter()
            rec["collected"] = gc.collect()
            rec["collect_s"] = round(time.perf_counter() - t, 3)
            rec["after"] = _counts()
            cycles = [o for o in gc.get_objects() if type(o).__name__ == "RequestResponseCycle"]
            if len(cycles) > 3:
                rec["survivor_referrers"] = _chain(cycles[0])
            del cycles
            f.write(json.dumps(rec) + "\n")
            f.flush()
            time.sleep(60)

    threading.Thread(target=_run, daemon=True, name="soak-gc-probe").start()
