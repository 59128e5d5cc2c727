"""A throwaway PostgreSQL server from Debian's `postgresql` package: initdb in a temp folder, a Unix socket only.

PostgreSQL refuses to run as root, and CI runs as root: then initdb, pg_ctl and createdb run as the package's
`postgres` user (runuser), which owns the folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def binaries() -> Path | None:
    """The folder holding initdb and pg_ctl: on PATH, else Debian's /usr/lib/postgresql/<newest>/bin."""
    found = shutil.which("initdb")  # often a link into Debian's folder, which also holds createdb
    if found and (Path(found).resolve().parent / "pg_ctl").is_file():
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return versions[-1].parent if versions else None


@contextmanager
def server(bindir: Path) -> Iterator[str]:
    """Start a server, create a database, yield its SQLAlchemy URL (psycopg2, over the socket); stop and delete."""
    folder = Path(tempfile.mkdtemp(prefix="fashion-lab-pg-"))
    as_postgres = []
    if os.geteuid() == 0:
        folder.chmod(0o755)
        shutil.chown(folder, "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]

    def run(tool: str, *args: str) -> None:
        subprocess.run([*as_postgres, str(bindir / tool), *args], check=True, capture_output=True, timeout=120)

    data = str(folder / "data")
    run("initdb", "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
    options = f"-k {folder} -c listen_addresses='' -c fsync=off"  # no TCP port: nothing to collide with
    run("pg_ctl", "-D", data, "-o", options, "-l", str(folder / "server.log"), "-w", "start")
    try:
        run("createdb", "-h", str(folder), "-U", "postgres", "studies")
        yield f"postgresql+psycopg2://postgres@/studies?host={folder}"
    finally:
        run("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)
