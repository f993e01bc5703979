"""The `mcp-latent` command line, one module per command group (`main.py` builds the parser): `serve.py`
(serve, evaluate), `profiles.py`, `untaught.py` (list and revert taught exemplars), `store.py` (namespaces,
postgres), `doctor.py`, `report.py`; `common.py` holds what they share.

Commands that only read files (`profiles list`, `profiles check`, `--help`, `--version`) never import the
embedding stack: engine modules are imported inside the commands that need them."""
