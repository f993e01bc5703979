"""One small exception tree. Every message says what was wrong and what to do next; the MCP layer shows it as is."""


class LatentError(Exception):
    """Base of every error mcp-latent raises on purpose."""


class InvalidInput(LatentError):
    """An argument is missing, of the wrong shape, or past a documented limit."""


class NotFound(LatentError):
    """A handle or profile does not exist (in the caller's namespace)."""


class ProfileError(LatentError):
    """A profile file is invalid; the message names the file and field."""


class StoreError(LatentError):
    """The durable store or its index failed; nothing acknowledged was lost."""


class ModelError(LatentError):
    """The embedding model could not be loaded."""


class NotAllowed(LatentError):
    """The operation is switched off by a setting."""


class NotReady(LatentError):
    """A profile is still being fitted; the message says about how long until it answers."""
