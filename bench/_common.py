"""What the benchmarks share: a free port for the sandbox, a fresh PostgreSQL database, a
process's own peak memory."""

from __future__ import annotations

import resource
import socket
import sys


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fresh_postgres(url: str) -> None:
    """Drop and recreate the named PostgreSQL database so every run starts empty."""
    from urllib.parse import urlsplit

    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    with psycopg.connect(
        host=parts.hostname,
        port=parts.port or 5432,
        user=parts.username,
        password=parts.password,
        dbname="postgres",
        autocommit=True,
    ) as conn:
        # A run killed earlier may have left sessions open on it.
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name]
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def peak_rss_kb() -> int:
    """This process's own peak resident memory (kB).

    Linux's `ru_maxrss` is not it: a process started by fork and exec inherits the parent's peak
    (the kernel keeps the larger of the two across exec); a bench's parent may hold the sandbox,
    whose data grows with the run. `VmHWM` is the high-water mark of this process's own
    memory since its exec. Elsewhere, `ru_maxrss` it is.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes there, kB elsewhere
