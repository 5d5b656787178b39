"""A real OpenLDAP ``slapd`` for the LDAP tests: a temp dir, 127.0.0.1, a free port.

Debian's ``slapd`` package (``.ci/run`` installs it with ``ldap-utils``). The directory is
an ``mdb`` database loaded offline with ``slapadd`` from a small LDIF, configured by a
``slapd.conf`` (simpler than cn=config for a throwaway server):

- ``ou=people,dc=devpi,dc=test``: alice (password ``alice-pw``), bob (``bob-pw``),
  carol (``carol-pw``, in no group)
- ``ou=groups,dc=devpi,dc=test``: ``team-a`` (alice), ``team-b`` (bob), as groupOfNames
- ``cn=reader,dc=devpi,dc=test`` (``reader-pw``): the account the server searches with

Changes during a test (``modify``) are made with ``ldapmodify`` as the directory's admin,
as an operator would. ``stop``/``start`` keep the data and the port, for outage tests;
``freeze``/``thaw`` (SIGSTOP/SIGCONT) make a directory that accepts connections but never
answers.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .ports import free_port

SLAPD = shutil.which("slapd") or ("/usr/sbin/slapd" if os.path.exists("/usr/sbin/slapd") else None)
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")
BASE = "dc=devpi,dc=test"
ADMIN_DN = f"cn=admin,{BASE}"
ADMIN_PW = "admin-pw"
READER_DN = f"cn=reader,{BASE}"
READER_PW = "reader-pw"
PEOPLE = f"ou=people,{BASE}"
GROUPS = f"ou=groups,{BASE}"
USERS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}
PLACEHOLDER = f"cn=nobody,{BASE}"
MEMBERS = {"team-a": ["alice"], "team-b": ["bob"]}


def available() -> bool:
    return SLAPD is not None and (shutil.which("slapadd") is not None or os.path.exists("/usr/sbin/slapadd"))


def user_dn(name: str) -> str:
    return f"uid={name},{PEOPLE}"


def _ldif() -> str:
    parts = [f"dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\ndc: devpi\no: devpi tests\n",
             f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n",
             f"dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups\n",
             f"dn: {READER_DN}\nobjectClass: simpleSecurityObject\nobjectClass: organizationalRole\n"
             f"cn: reader\nuserPassword: {READER_PW}\n"]
    for name, pw in USERS.items():
        parts.append(f"dn: {user_dn(name)}\nobjectClass: inetOrgPerson\nuid: {name}\ncn: {name}\n"
                     f"sn: {name}\nuserPassword: {pw}\n")
    for group, members in MEMBERS.items():
        # groupOfNames needs one member at least: a placeholder, so the last real one can go
        lines = f"member: {PLACEHOLDER}\n" + "".join(f"member: {user_dn(m)}\n" for m in members)
        parts.append(f"dn: cn={group},{GROUPS}\nobjectClass: groupOfNames\ncn: {group}\n{lines}")
    return "\n".join(parts)


def _conf(workdir: Path) -> str:
    schemas = "".join(f"include {SCHEMA_DIR / s}.schema\n" for s in ("core", "cosine", "inetorgperson", "nis"))
    return (f"{schemas}"
            f"modulepath {MODULE_DIR}\nmoduleload back_mdb\n"
            f"pidfile {workdir / 'slapd.pid'}\nargsfile {workdir / 'slapd.args'}\n"
            "access to attrs=userPassword by self read by anonymous auth by * none\n"
            "access to * by * read\n"
            f"database mdb\nmaxsize 16777216\nsuffix \"{BASE}\"\nrootdn \"{ADMIN_DN}\"\n"
            f"rootpw {ADMIN_PW}\ndirectory {workdir / 'data'}\n")


class Slapd:
    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.conf = self.workdir / "slapd.conf"

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    def setup(self) -> Slapd:
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        self.conf.write_text(_conf(self.workdir))
        ldif = self.workdir / "seed.ldif"
        ldif.write_text(_ldif())
        slapadd = shutil.which("slapadd") or "/usr/sbin/slapadd"
        subprocess.run([slapadd, "-f", str(self.conf), "-l", str(ldif)], check=True, capture_output=True)
        return self

    def start(self, timeout: float = 20) -> Slapd:
        if not self.port:
            self.port = free_port()
        log = open(self.workdir / "slapd.log", "ab")
        # -d 0: stay in the foreground (the test owns the process), log nothing to stderr
        self.proc = subprocess.Popen([SLAPD, "-f", str(self.conf), "-h", f"ldap://127.0.0.1:{self.port}/",
                                      "-d", "0"], stdout=log, stderr=log, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"slapd exited with {self.proc.returncode}: "
                                   f"{(self.workdir / 'slapd.log').read_text(errors='replace')[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("slapd did not listen in time")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.thaw()
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def freeze(self) -> None:
        """The process keeps its socket (the kernel accepts connections) but answers nothing."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)

    def modify(self, ldif: str) -> None:
        """Apply an LDIF change as the directory's admin (``ldapmodify``)."""
        ldapmodify = shutil.which("ldapmodify") or "/usr/bin/ldapmodify"
        subprocess.run([ldapmodify, "-x", "-H", self.url, "-D", ADMIN_DN, "-w", ADMIN_PW],
                       input=ldif.encode(), check=True, capture_output=True, timeout=30)

    def remove_member(self, group: str, user: str) -> None:
        self.modify(f"dn: cn={group},{GROUPS}\nchangetype: modify\ndelete: member\nmember: {user_dn(user)}\n")

    def add_member(self, group: str, user: str) -> None:
        self.modify(f"dn: cn={group},{GROUPS}\nchangetype: modify\nadd: member\nmember: {user_dn(user)}\n")

    def config(self, **overrides) -> dict:
        """A server LDAP config (the ``--ldap-config`` YAML's shape) for this directory."""
        cfg = {
            "url": self.url,
            "user_search": {"base": PEOPLE, "filter": "(&(objectClass=inetOrgPerson)(uid={username}))",
                            "userdn": READER_DN, "password": READER_PW},
            "group_search": {"base": GROUPS, "filter": "(&(objectClass=groupOfNames)(member={userdn}))",
                             "attribute_name": "cn", "userdn": READER_DN, "password": READER_PW},
            "timeout": 3,
            "cache_ttl": 2,
        }
        cfg.update(overrides)
        return cfg


@pytest.fixture(scope="session")
def slapd(tmp_path_factory) -> Iterator[Slapd]:
    """A real slapd for the test session (one per xdist worker). Tests that change it (a
    membership, a stop) put it back as it was. Absent binaries skip the test on a
    developer's machine and fail it on CI, where .ci/run installs them."""
    if not available():
        if os.environ.get("CI"):
            pytest.fail("slapd (Debian's slapd package) is missing on CI")
        pytest.skip("no slapd on this machine (apt-get install slapd ldap-utils)")
    directory = Slapd(tmp_path_factory.mktemp("slapd")).setup().start()
    yield directory
    directory.stop()
