"""Attacks on the LDAP login (``--ldap-config``), against a real slapd.

The attacker tries: filter and DN injection through the user name (``*``, ``)(``, ``,``,
NUL, huge names) to log in as someone else or to make any password match; an empty
password, which an LDAP server takes as an *anonymous* bind (a success!); a directory that
accepts connections and never answers, to hold the server's threads; and the operator's
mistakes in the config file, which must stop the start with one readable line.

What must hold: only a directory user's own password logs in as them; the empty password
never does; a hung directory costs a request at most ``timeout`` seconds (twice: connect,
answer) and answers 503, while anonymous reads go on; a bad file is one line and a
non-zero exit, before the server listens.
"""
from __future__ import annotations

import base64
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
import yaml
from support import slapd as dirsupport

THROTTLE_OFF = ("--login-rate", "1000/60", "--login-rate-user", "1000/60")


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode(),
            "Accept": "application/json"}


@pytest.fixture
def ldap_srv(slapd, make_server, tmp_path):
    cfg = tmp_path / "ldap.yaml"
    cfg.write_text(yaml.safe_dump(slapd.config(timeout=1, cache_ttl=1)))
    return make_server(args=("--ldap-config", str(cfg), *THROTTLE_OFF))


def _directory(slapd, **overrides):
    """The server's own directory client, in this process, against the real slapd: the
    layer where a name reaches LDAP (the HTTP layer refuses these names before)."""
    from devpi.server.accounts.ldap_config import parse
    from devpi.server.accounts.ldap_directory import Directory

    return Directory(parse(slapd.config(**overrides)))


INJECTIONS = ["*", "a*", "*)(uid=*", "alice)(uid=*", "alice)(|(uid=*)", "*)(|(objectClass=*)",
              "alice\x00", "alice\\2a", "(uid=alice)", "alice,ou=people,dc=devpi,dc=test",
              "uid=alice,ou=people,dc=devpi,dc=test", "x" * 10_000]


@pytest.mark.parametrize("name", INJECTIONS, ids=range(len(INJECTIONS)))
def test_injected_names_match_nobody_in_the_directory(slapd, name):
    for directory in (_directory(slapd),
                      _directory(slapd, user_search=None,
                                 user_template=f"uid={{username}},{dirsupport.PEOPLE}")):
        for password in ("alice-pw", "bob-pw", "reader-pw"):
            assert directory.check_password(name, password) in (None, False)
        assert directory.groups(name) == []


HTTP_NAMES = ["*", "alice)(uid=*", "al*", "alice\x00", "a" * 100_000, "alice "]


@pytest.mark.parametrize("name", HTTP_NAMES, ids=range(len(HTTP_NAMES)))
def test_injected_names_over_http_are_refused(ldap_srv, name):
    r = requests.post(f"{ldap_srv.url}/+login", json={"user": name, "password": "alice-pw"}, timeout=30)
    assert r.status_code == 401, r.text
    r = requests.get(f"{ldap_srv.url}/+api", headers=_basic(name, "alice-pw"), timeout=30)
    if len(name) > 50_000:
        assert r.status_code == 431  # the header alone is refused
    else:
        assert r.status_code == 200 and r.json()["result"]["authstatus"][0] == "noauth"


@pytest.mark.parametrize("password", ["", "\x00"], ids=["empty", "nul"])
def test_the_empty_password_never_logs_in(ldap_srv, slapd, password):
    """An LDAP simple bind with a DN and no password is an anonymous bind, and slapd accepts
    it: counted as a login it would let anyone in as anyone."""
    for user in ("alice", "bob", "carol"):
        r = requests.post(f"{ldap_srv.url}/+login", json={"user": user, "password": password}, timeout=30)
        assert r.status_code == 401, r.text
        r = requests.get(f"{ldap_srv.url}/+api", headers=_basic(user, password), timeout=30)
        assert r.json()["result"]["authstatus"][0] == "noauth"
    for directory in (_directory(slapd),
                      _directory(slapd, user_search=None,
                                 user_template=f"uid={{username}},{dirsupport.PEOPLE}")):
        assert directory.check_password("alice", password) is False


def test_a_wrong_password_of_a_directory_user_is_refused(slapd):
    directory = _directory(slapd)
    assert directory.check_password("alice", "bob-pw") is False
    assert directory.check_password("alice", "alice-pw") == ["team-a"]
    assert directory.check_password("nobody-here", "x") is None  # unknown: local users decide


def test_a_hung_directory_answers_503_in_bounded_time(ldap_srv, slapd):
    """slapd stopped with SIGSTOP: the kernel still accepts connections, nothing answers."""
    slapd.freeze()
    try:
        reads: list[int] = []

        def anonymous_reads():
            for _ in range(10):
                reads.append(requests.get(f"{ldap_srv.url}/+api", timeout=30).status_code)

        t0 = time.monotonic()
        results: list[requests.Response] = []
        logins = [threading.Thread(target=lambda: results.append(requests.post(
            f"{ldap_srv.url}/+login", json={"user": "alice", "password": "alice-pw"}, timeout=60)))
            for _ in range(4)]
        for t in logins:
            t.start()
        anonymous_reads()  # served meanwhile
        for t in logins:
            t.join()
        elapsed = time.monotonic() - t0
        assert [r.status_code for r in results] == [503] * 4, [r.text for r in results]
        assert all("directory" in r.json()["message"] for r in results)
        assert reads == [200] * 10
        # timeout: 1 -> a connect and one answer at most, with generous slack for a busy machine
        assert elapsed < 15, elapsed
    finally:
        slapd.thaw()


BAD_CONFIGS = {
    "missing": None,
    "not-yaml": "url: [ldap://x\n",
    "not-utf8": b"\xff\xfe url: x",
    "list": "- url\n",
    "unknown-key": "url: ldap://x\nuser_template: 'uid={username}'\ngroup_serach: {}\n",
    "both-user-ways": "url: ldap://x\nuser_template: 'uid={username}'\nuser_search: {base: b, filter: '(uid={username})'}\n",
    "no-user-way": "url: ldap://x\n",
    "bad-scheme": "url: http://127.0.0.1:389\nuser_template: 'uid={username}'\n",
    "no-base": "url: ldap://x\nuser_search: {filter: '(uid={username})'}\n",
    "bad-filter": "url: ldap://x\nuser_search: {base: b, filter: 'uid={username}'}\n",
    "empty-reader-password": "url: ldap://x\nuser_search: {base: b, filter: '(uid={username})', userdn: cn=r, password: ''}\n",
    "unknown-placeholder": "url: ldap://x\nuser_template: 'uid={user}'\n",
    "brace": "url: ldap://x\nuser_template: 'uid={username'\n",
    "zero-timeout": "url: ldap://x\nuser_template: 'uid={username}'\ntimeout: 0\n",
    "huge-timeout": "url: ldap://x\nuser_template: 'uid={username}'\ntimeout: 1e9\n",
    "text-ttl": "url: ldap://x\nuser_template: 'uid={username}'\ncache_ttl: soon\n",
    "missing-ca": "url: ldaps://x\nuser_template: 'uid={username}'\ntls: {ca_certs_file: /nonexistent/ca.pem}\n",
    "bad-validate": "url: ldaps://x\nuser_template: 'uid={username}'\ntls: {validate: maybe}\n",
    "group-without-attribute": "url: ldap://x\nuser_template: 'uid={username}'\ngroup_search: {base: b, filter: '(member={userdn})'}\n",
    "huge": "url: ldap://x\nuser_template: 'uid={username}'\n#" + "x" * (2 * 1024 * 1024) + "\n",
}


@pytest.mark.parametrize("name", list(BAD_CONFIGS))
def test_a_bad_config_file_stops_the_start_in_one_line(tmp_path, name):
    content = BAD_CONFIGS[name]
    path = tmp_path / "ldap.yaml"
    if content is not None:
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    p = subprocess.run([sys.executable, "-m", "devpi.server", "--serverdir", str(tmp_path / "srv"),
                        "--port", "0", "--ldap-config", str(path)], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0, p.stdout
    assert "Traceback" not in p.stderr, p.stderr
    assert "listening" not in p.stdout
    lines = [line for line in p.stderr.splitlines() if "--ldap-config" in line]
    assert len(lines) == 1 and lines[0].startswith("devpi server: --ldap-config "), p.stderr
    assert len(lines[0]) < 400


def test_a_devpi_ldap_file_works_as_it_is(slapd, make_server, tmp_path):
    """The devpi-ldap plugin's files have everything under a ``devpi-ldap:`` key."""
    cfg = tmp_path / "ldap.yaml"
    cfg.write_text(yaml.safe_dump({"devpi-ldap": slapd.config()}))
    s = make_server(args=("--ldap-config", str(cfg)))
    r = requests.get(f"{s.url}/+api", headers=_basic("bob", "bob-pw"), timeout=30)
    assert r.json()["result"]["authstatus"] == ["ok", "bob", ["team-b"]]


def test_without_the_option_no_directory_is_asked(make_server, slapd):
    s = make_server()
    assert Path(s.serverdir).exists()
    r = requests.get(f"{s.url}/+api", headers=_basic("alice", "alice-pw"), timeout=30)
    assert r.json()["result"]["authstatus"][0] == "noauth"
