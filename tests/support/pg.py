"""A throwaway PostgreSQL cluster for the test session (initdb + pg_ctl in a temp dir).

PostgreSQL refuses to run as root, so as root the cluster runs as the
`postgres` system user. Each test gets its own database.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

from .ports import free_port


def bindir() -> Path | None:
    """Where initdb and pg_ctl are: PATH first, then Debian's versioned directories."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    return None


def available() -> bool:
    return bindir() is not None


class PostgresCluster:
    def __init__(self, basedir: Path):
        self.basedir = Path(basedir)
        self.datadir = self.basedir / "data"
        self.port = free_port()
        self.user = "devpi"
        self._as_postgres = os.geteuid() == 0
        self.bin = bindir() or Path("/usr/bin")

    def _run(self, *cmd: str) -> None:
        if self._as_postgres:
            cmd = ("runuser", "-u", "postgres", "--", *cmd)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self) -> PostgresCluster:
        self.basedir.mkdir(parents=True, exist_ok=True)
        if self._as_postgres:
            shutil.chown(self.basedir, "postgres")
            os.chmod(self.basedir, 0o700)
        self._run(str(self.bin / "initdb"), "-D", str(self.datadir), "-U", self.user, "--auth=trust", "-E", "UTF8",
                  "--no-sync")
        opts = f"-p {self.port} -k {self.basedir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.datadir), "-o", opts, "-l", str(self.basedir / "pg.log"), "-w", "start")
        return self

    def stop(self) -> None:
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "-w", "stop")
        except subprocess.CalledProcessError:
            pass

    def url(self, dbname: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def new_database(self) -> str:
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        for _ in range(50):
            try:
                with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
                    conn.execute(f'CREATE DATABASE "{name}"')
                return self.url(name)
            except psycopg.OperationalError:
                time.sleep(0.1)
        raise RuntimeError("PostgreSQL did not accept connections")
