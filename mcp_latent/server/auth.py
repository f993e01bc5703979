"""Named, scoped bearer tokens for the HTTP transport: who may read and write which namespaces, teach which profiles.

The tokens file (MCP_LATENT_TOKENS_FILE, TOML; docs/teach-control.md):

    [[tokens]]
    name = "planner"                # recorded as the teacher of what this token teaches
    sha256 = "9f86d0..."            # hex SHA-256 of the token (or `token = "..."`, the token itself)
    write = ["team-a", "team-a:*"]  # namespaces it may write (handoff, embed, drop); it may read them too
    read = ["shared"]               # further namespaces it may read (evaluate, similar, get, teach by handle)
    teach = ["my-risk"]             # profiles it may teach; ["*"] every profile, [] (default) none
    read_only = false               # true: no writing tool at all, whatever the lists say

Patterns are shell-style (`*`, `?`, `[...]`). The single `--token`/MCP_LATENT_TOKEN stays a full-access token
named "token". Tokens are compared as SHA-256 digests with `hmac.compare_digest` against every entry.

Who owns what: `TokenRegistry._tokens` is an immutable tuple swapped whole by the reload thread (the only writer);
the middleware on the event loop reads it with one attribute read and never waits. The reload thread only stats
the file every `tokens_poll_seconds` and re-reads it when its modification time or size changed; a file that does
not parse keeps the last good tokens, and the log says why.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import logging
import threading
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mcp_latent.errors import InvalidInput, NotAllowed

log = logging.getLogger(__name__)

PRINCIPAL_KEY = "mcp_latent_principal"  # where the middleware leaves the caller in the ASGI scope's state
SINGLE_TOKEN_NAME = "token"
WRITING_TOOLS = frozenset({"handoff", "embed", "teach", "drop_namespace"})
READING_TOOLS = frozenset({"evaluate", "similar", "get"})


class _TokenEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    token: str | None = Field(None, min_length=16)
    sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$")
    read: list[str] = Field(default_factory=list)
    write: list[str] = Field(default_factory=list)
    teach: list[str] = Field(default_factory=list)
    read_only: bool = False

    @model_validator(mode="after")
    def _one_secret(self) -> _TokenEntry:
        if (self.token is None) == (self.sha256 is None):
            raise ValueError("give exactly one of `token` (the token itself) or `sha256` (its hex SHA-256)")
        return self


class _TokensFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tokens: list[_TokenEntry] = Field(default_factory=list)


@dataclass(frozen=True)
class Principal:
    """An authenticated caller and what it may do."""

    name: str
    read: tuple[str, ...] = ("*",)
    write: tuple[str, ...] = ("*",)
    teach: tuple[str, ...] = ("*",)
    read_only: bool = False

    def may_read(self, namespace: str) -> bool:
        return self.may_write(namespace) or _matches(namespace, self.read)

    def may_write(self, namespace: str) -> bool:
        return not self.read_only and _matches(namespace, self.write)

    def may_teach(self, profile: str) -> bool:
        return not self.read_only and _matches(profile, self.teach)

    def check(self, tool: str, arguments: dict[str, Any], default_namespace: str) -> None:
        """Raise NotAllowed when this caller may not make this call. Arguments of the wrong type are left to the
        tool's own validation (which refuses them before anything is read or written)."""
        if self.read_only and tool in WRITING_TOOLS:
            raise NotAllowed(f"token {self.name!r} is read-only; `{tool}` writes. {self._scope()}")
        namespace = arguments.get("namespace")
        namespace = default_namespace if namespace is None else namespace
        if tool == "namespaces" and not _matches("*", self.read + self.write):
            raise NotAllowed(f"token {self.name!r} may not list every namespace (needs read = ['*']). {self._scope()}")
        if tool in ("handoff", "embed", "drop_namespace") and isinstance(namespace, str):
            if not self.may_write(namespace):
                raise NotAllowed(f"token {self.name!r} may not write namespace {namespace!r}. {self._scope()}")
        reads_store = tool in READING_TOOLS and not (tool == "evaluate" and arguments.get("handle") is None)
        if reads_store and isinstance(namespace, str) and not self.may_read(namespace):  # a text alone reads none
            raise NotAllowed(f"token {self.name!r} may not read namespace {namespace!r}. {self._scope()}")
        if tool == "teach":
            named = [arguments.get("profile")] + list(arguments.get("labels") or {})
            for profile in (p for p in named if isinstance(p, str)):
                if not self.may_teach(profile):
                    raise NotAllowed(f"token {self.name!r} may not teach profile {profile!r}. {self._scope()}")
            if arguments.get("handle") is not None and isinstance(namespace, str) and not self.may_read(namespace):
                raise NotAllowed(f"token {self.name!r} may not read namespace {namespace!r}. {self._scope()}")

    def _scope(self) -> str:
        def shown(patterns: tuple[str, ...]) -> str:
            return ", ".join(patterns) or "nothing"

        if self.read_only:
            return f"It may read: {shown(self.read + self.write)}; ask the operator to change it in the tokens file."
        return (
            f"It may write: {shown(self.write)}; read: {shown(self.read + self.write)}; teach: {shown(self.teach)}; "
            "ask the operator to change it in the tokens file."
        )


FULL_ACCESS = Principal(SINGLE_TOKEN_NAME)


def _matches(value: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(value, pattern) for pattern in patterns)


def _digest(token: str | bytes) -> bytes:
    return hashlib.sha256(token.encode() if isinstance(token, str) else token).digest()


def parse_tokens(path: Path) -> tuple[tuple[bytes, Principal], ...]:
    """Read and check a tokens file; raises InvalidInput naming the file and what is wrong."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        parsed = _TokensFile.model_validate(data)
    except OSError as exc:
        raise InvalidInput(f"cannot read the tokens file {path}: {exc.strerror or exc}.") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"the tokens file {path} is not valid TOML: {exc}.") from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'file'}: {error['msg']}" for error in exc.errors()
        )
        raise InvalidInput(f"the tokens file {path} is invalid: {problems}.") from None
    names = [entry.name for entry in parsed.tokens]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InvalidInput(f"the tokens file {path} names {', '.join(repeated)} more than once; names must differ.")
    out = []
    for entry in parsed.tokens:
        digest = _digest(entry.token) if entry.token is not None else bytes.fromhex(entry.sha256 or "")
        principal = Principal(entry.name, tuple(entry.read), tuple(entry.write), tuple(entry.teach), entry.read_only)
        out.append((digest, principal))
    return tuple(out)


class TokenRegistry:
    """The tokens a server accepts: the single full-access token, the tokens file's, reloaded when it changes."""

    def __init__(self, single_token: str | None, tokens_file: Path | None, poll_seconds: float = 2.0):
        self._single = (_digest(single_token), FULL_ACCESS) if single_token else None
        self._path = Path(tokens_file).expanduser() if tokens_file else None
        self._poll_seconds = poll_seconds
        self._stamp: tuple[float, int] | None = None  # the file's (mtime, size) when its tokens were read
        self._settling: tuple[float, int] | None = None  # a newer stamp, seen once: read when seen again
        self._tokens: tuple[tuple[bytes, Principal], ...] = ()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self._path is not None:  # a bad file at startup refuses to serve: there is no last good one to keep
            self._stamp = self._stat()
            self._tokens = parse_tokens(self._path)

    @property
    def enabled(self) -> bool:
        return self._single is not None or self._path is not None

    def names(self) -> list[str]:
        return [principal.name for _, principal in self._entries()]

    def _entries(self) -> tuple[tuple[bytes, Principal], ...]:
        tokens = self._tokens  # one read: the reload thread swaps the tuple whole
        return ((self._single,) if self._single else ()) + tokens

    def authenticate(self, supplied: bytes) -> Principal | None:
        """The principal of an `Authorization` header value (`Bearer <token>`), or None. Every entry is compared
        (constant time each), so the time taken does not say which one matched."""
        scheme, _, token = supplied.partition(b" ")
        if scheme.lower() != b"bearer" or not token.strip():
            return None
        digest = _digest(token.strip())
        found = None
        for expected, principal in self._entries():
            if hmac.compare_digest(digest, expected) and found is None:
                found = principal
        return found

    def start(self) -> None:
        if self._path is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._watch, name="mcp-latent-tokens", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def _stat(self) -> tuple[float, int] | None:
        assert self._path is not None
        try:
            info = self._path.stat()
        except OSError:
            return None
        return info.st_mtime, info.st_size

    def reload_if_changed(self) -> bool:
        """Re-read the file once its modification time or size moved and then held still for one poll; True when
        new tokens were taken. Why the wait: an editor (or `write_text`) truncates, then writes; read in between,
        the file is empty, valid TOML with no tokens, and every token would be revoked until the next change."""
        stamp = self._stat()
        if stamp == self._stamp:
            self._settling = None
            return False
        if stamp != self._settling:
            self._settling = stamp  # changed since the last look: read it when it has stopped changing
            return False
        self._stamp, self._settling = stamp, None
        assert self._path is not None
        try:
            tokens = parse_tokens(self._path)
        except InvalidInput as exc:
            log.error("tokens file not reloaded, keeping the last good tokens (%d): %s", len(self._tokens), exc)
            return False
        self._tokens = tokens
        log.info("tokens file reloaded: %s", ", ".join(p.name for _, p in tokens) or "no tokens")
        return True

    def _watch(self) -> None:
        while not self._stop.wait(self._poll_seconds):
            try:
                self.reload_if_changed()
            except Exception:  # never let the watcher die: the server would silently stop following the file
                log.exception("checking the tokens file failed; trying again in %.1f s", self._poll_seconds)


def principal_of(context: Any) -> Principal | None:
    """The caller the HTTP middleware authenticated for this request, or None (stdio, or HTTP without tokens)."""
    try:
        request = context.request_context.request
    except (AttributeError, ValueError):
        return None
    state = getattr(request, "scope", {}).get("state") if request is not None else None
    return state.get(PRINCIPAL_KEY) if isinstance(state, dict) else None
