"""The runtime: everything that holds state while a server runs.

- `lifecycle.py`: `ServiceRuntime`: startup (model, store, profiles), readiness, status, shutdown.
- `api.py`: `LatentService`, the library API the MCP tools and the CLI wrap (embed, handoff, evaluate, ...).
- `checks.py`: input checks at that boundary.
- `live_profile.py`: one profile's fit lifecycle (first fit, teach, background refits).
- `stream_record.py`: a profile's recent verdicts and spot checks, and the threshold they set at each refit.
- `refit_pacer.py`: how often refits may run, and when a recalibration is due.
- `taught_set.py`: what a profile was taught (pairs in order, each text's latest label and store id, their hash).
- `fit_estimate.py`: how far a profile's first fit has got and when it ends.
- `maintenance.py`: retention and following other servers' teaches and reverts; `heap_trim.py`: glibc's free
  heap pages handed back to the OS on the retention clock.
- `usage_stats.py` + `usage_db.py`: answered / escalated / taught counts and call latencies, per minute then per day.
- `namespaces.py`: namespace listing and export helpers; `handoffs.py`: forget, recent and the search filters.
- `user_profiles.py`: profiles defined and deleted over MCP (`ProfileEditor`, copy-on-write tables).
- `teachers.py`: who teaches (the caller of a tool call), counts per teacher, following reverts.
- `verdict_memo.py`: verdicts a fitted snapshot already gave, kept with it (a handle judged again is not recomputed).
- `prefetch.py`: texts just stored judged ahead, between calls, by the profiles used recently (into that memo)."""
