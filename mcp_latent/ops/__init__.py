"""What an operator sees: the figures a running server or a data dir holds, as metrics, a page and checks.

- `metrics.py`: the Prometheus collector behind `/metrics` (one registry per server).
- `dashboard.py`: the figures of the page at `/` and of `mcp-latent report`, from a data dir's usage stats.
- `page.py`: those figures as one self-contained HTML page (plots as inline SVG, no network).
- `plots.py`: the matplotlib figures of that page.
- `doctor.py`: `mcp-latent doctor`'s checks, each with its fix.
No module here imports `mcp`; the HTTP routes that serve these live in `server/ops_routes.py`."""
