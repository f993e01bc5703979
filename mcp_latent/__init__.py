"""mcp-latent: hand agent evaluation to vector math. Embed once, pass a handle, get calibrated verdicts."""

__version__ = "0.1.0"
