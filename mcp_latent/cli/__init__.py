"""The `mcp-latent` command line, one module per command group (`main.py` builds the parser).

Commands that only read files (`profiles list`, `profiles check`, `--help`, `--version`) never import the
embedding stack: engine modules are imported inside the commands that need them."""
