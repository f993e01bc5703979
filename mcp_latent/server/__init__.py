"""The MCP face: tools, schema compaction, HTTP and its auth, startup. The only package that imports `mcp`.

- `tools.py`: the tools and resources over a `LatentService` (`build_server`).
- `models.py`: the tools' structured outputs and annotations.
- `schema.py`: compact tool schemas, minified results and argument-error wording.
- `http.py`: the Starlette app with bearer-token auth, loopback rules, the listening socket;
  `ops_routes.py`: the usage page at `/` and `/metrics` beside `/mcp`.
- `auth.py`: named, scoped tokens from a file the server reloads; the caller of each request.
- `deferred.py`: the service proxy that lets `tools/list` answer before the model loads.
- `startup.py`: `serve`, which picks the transport and runs it."""
