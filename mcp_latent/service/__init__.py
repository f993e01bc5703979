"""The runtime: everything that holds state while a server runs.

- `lifecycle.py`: `ServiceRuntime`: startup (model, store, profiles), readiness, status, shutdown.
- `api.py`: `LatentService`, the library API the MCP tools and the CLI wrap (embed, handoff, evaluate, ...).
- `checks.py`: input checks at that boundary.
- `live_profile.py`: one profile's fit lifecycle (first fit, teach, background refits).
- `stream_record.py`: a profile's recent verdicts and spot checks, and the threshold they set at each refit.
- `refit_pacer.py`: how often refits may run.
- `maintenance.py`: retention and following other servers' teaches.
- `usage_stats.py`: answered / escalated / taught counts per profile.
- `namespaces.py`: namespace listing and export helpers."""
