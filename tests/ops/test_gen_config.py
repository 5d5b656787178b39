"""``devpi gen-config``: the files it writes work, checked by the tools that read them.

The nginx site passes ``nginx -t`` and, run by a real nginx on a free port in front of a
real server, proxies installs, big uploads and the web UI's static files, with the outside
URL (a path prefix only the ``X-Outside-Url`` header can tell the server) honoured. The
systemd unit passes ``systemd-analyze verify`` and its ExecStart line starts a server.
"""
from __future__ import annotations

import os
import random
import shlex
import shutil
import signal
import string
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from support.dists import wheel_bytes
from support.nginx import (
    NGINX,
    gen_config,
    missing,
    need_nginx,
    nginx_conf,
    nginx_test,
    wait_for_logged,
    wait_port,
)
from support.ports import free_port

DEVPI = str(Path(sys.executable).parent / "devpi")


def test_nginx_site_proxies_installs_uploads_and_static_files_with_the_outside_url(make_server, tmp_path):
    s = make_server()
    auth = s.login("root", "root")
    assert s.api("PUT", "/root/gc", json={"type": "stage", "bases": []}, auth=auth).status_code == 200
    nport = free_port()
    outside = f"http://127.0.0.1:{nport}/devpi"
    out = tmp_path / "conf"
    p = gen_config("--serverdir", str(s.serverdir), "--host", "127.0.0.1", "--port", str(s.port),
                   "--outside-url", outside, "--output", str(out), "--nginx-logdir", str(tmp_path / "nginxlog"))
    assert p.returncode == 0, p.stderr
    assert sorted(x.name for x in out.iterdir()) == ["devpi.logrotate", "devpi.service", "nginx-devpi.conf"]
    (tmp_path / "nginxlog").mkdir()
    (tmp_path / "nginx").mkdir()
    conf = nginx_conf(tmp_path / "nginx", out / "nginx-devpi.conf")
    t = nginx_test(conf)
    assert t.returncode == 0, t.stderr
    nginx = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(conf.parent)], stderr=subprocess.PIPE,
                             start_new_session=True)
    try:
        wait_port(nport, nginx)
        # the outside URL's path prefix: only X-Outside-Url can tell the server about it
        api = requests.get(f"{outside}/+api", headers={"Accept": "application/json"}, timeout=30)
        assert api.status_code == 200, api.text
        assert api.json()["result"]["login"] == f"{outside}/+login"
        assert requests.get(f"{outside}", allow_redirects=False, timeout=30).headers["Location"].endswith("/devpi/")
        # an upload above nginx's default 1m body limit goes through (client_max_body_size)
        body = "".join(random.choices(string.ascii_letters, k=3 << 20))
        filename, data = wheel_bytes("gc-big", "1.0", module_body=f"DATA = {body!r}\n")
        assert len(data) > 2 << 20
        r = requests.post(f"{outside}/root/gc/", auth=auth, timeout=120,
                          data={":action": "file_upload", "name": "gc-big", "version": "1.0"},
                          files={"content": (filename, data)})
        assert r.status_code == 200, r.text
        # pip installs through nginx; the file is streamed back whole
        target = tmp_path / "target"
        pip = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target),
                              "--index-url", f"{outside}/root/gc/+simple/", "gc-big"],
                             capture_output=True, text=True, timeout=300)
        assert pip.returncode == 0, pip.stdout + pip.stderr
        assert body in (target / "gc_big" / "__init__.py").read_text()
        # the web UI's static files come from nginx itself, the same bytes the server has
        direct = requests.get(f"{s.url}/+static/style.css", timeout=30)
        proxied = requests.get(f"{outside}/+static/style.css", timeout=30)
        assert direct.status_code == proxied.status_code == 200 and direct.content == proxied.content
        assert "X-Devpi-Serial" not in proxied.headers and "X-Devpi-Serial" in direct.headers
        # nginx passed the client's address on: the server's log line for it came through nginx
        wait_for_logged(tmp_path / "nginxlog" / "devpi.access.log", "/devpi/root/gc/+simple/gc-big/")
    finally:
        os.killpg(nginx.pid, signal.SIGTERM)
        nginx.wait(30)


def test_https_site_passes_nginx_t_with_a_certificate(tmp_path):
    need_nginx()
    if shutil.which("openssl") is None:
        missing("openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=devpi.example.org", "-keyout", str(key), "-out", str(cert)], check=True,
                   capture_output=True, timeout=120)
    out = tmp_path / "conf"
    p = gen_config("--serverdir", str(tmp_path / "srv"), "--outside-url", "https://devpi.example.org",
                   "--tls-cert", str(cert), "--tls-key", str(key), "--output", str(out),
                   "--nginx-logdir", str(tmp_path))
    assert p.returncode == 0, p.stderr
    site = (out / "nginx-devpi.conf").read_text()
    assert "listen 443 ssl;" in site and "return 301 https://" in site and f"ssl_certificate     {cert};" in site
    (tmp_path / "nginx").mkdir()
    t = nginx_test(nginx_conf(tmp_path / "nginx", out / "nginx-devpi.conf"))
    assert t.returncode == 0, t.stderr
    # without a certificate at the placeholder paths nginx says what is missing
    p = gen_config("--serverdir", str(tmp_path / "srv"), "--outside-url", "https://devpi.example.org",
                   "--output", str(tmp_path / "placeholder"), "--nginx-logdir", str(tmp_path))
    (tmp_path / "nginx2").mkdir()
    t = nginx_test(nginx_conf(tmp_path / "nginx2", tmp_path / "placeholder" / "nginx-devpi.conf"))
    assert t.returncode != 0 and "/etc/ssl/devpi/fullchain.pem" in t.stderr


def test_systemd_unit_verifies_and_its_execstart_runs_a_server(tmp_path):
    out = tmp_path / "conf"
    serverdir = tmp_path / "srv"
    port = free_port()
    p = gen_config("--serverdir", str(serverdir), "--port", str(port), "--outside-url", "https://pkg.example.org",
                   "--output", str(out), "--storage", f"sqlite:///{serverdir}/other.sqlite")
    assert p.returncode == 0, p.stderr
    unit = (out / "devpi.service").read_text()
    for line in ("Restart=on-failure", "NoNewPrivileges=yes", "ProtectSystem=strict", f"ReadWritePaths={serverdir}",
                 "KillSignal=SIGTERM", "# No ExecReload"):
        assert line in unit, line
    analyze = shutil.which("systemd-analyze")
    if analyze is not None:
        v = subprocess.run([analyze, "verify", str(out / "devpi.service")], capture_output=True, text=True,
                           timeout=60)
        assert v.returncode == 0, v.stdout + v.stderr
        assert "devpi.service" not in v.stderr, v.stderr  # no complaint about our unit at all
    # ExecStart is a command that runs this server with the options given
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    cmd = shlex.split(exec_start[len("ExecStart="):])
    assert cmd[:2] == [DEVPI, "server"]
    log = tmp_path / "server.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen([*cmd, "--root-passwd", "pw"], stdout=subprocess.PIPE, stderr=err, text=True,
                                start_new_session=True)
    try:
        line = proc.stdout.readline()
        assert f"listening on http://127.0.0.1:{port}" in line and "other.sqlite" in line, line
        api = requests.get(f"http://127.0.0.1:{port}/+api", headers={"Accept": "application/json"}, timeout=30)
        assert api.json()["result"]["login"] == "https://pkg.example.org/+login"  # --outside-url
    finally:
        proc.send_signal(signal.SIGTERM)  # what systemctl stop sends (KillSignal=)
        assert proc.wait(10) == 0
    assert "devpi server stopped (SIGTERM" in log.read_text()


def test_logrotate_file(tmp_path):
    out = tmp_path / "conf"
    p = gen_config("--serverdir", str(tmp_path / "srv"), "--outside-url", "https://pkg.example.org",
                   "--output", str(out), "--logdir", str(tmp_path / "log"), "--user", "root")
    assert p.returncode == 0, p.stderr
    text = (out / "devpi.logrotate").read_text()
    assert f"{tmp_path / 'log' / 'devpi.log'} {{" in text and "copytruncate" in text
    assert f"StandardError=append:{tmp_path / 'log' / 'devpi.log'}" in (out / "devpi.service").read_text()
    logrotate = shutil.which("logrotate") or ("/usr/sbin/logrotate" if os.path.exists("/usr/sbin/logrotate") else None)
    if logrotate is None:
        missing("logrotate")
    (tmp_path / "log").mkdir()
    (tmp_path / "log" / "devpi.log").write_text("a line\n" * 100)
    os.chmod(out / "devpi.logrotate", 0o644)
    r = subprocess.run([logrotate, "-f", "-s", str(tmp_path / "state"), str(out / "devpi.logrotate")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "log" / "devpi.log").read_text() == ""  # copied and emptied in place
    assert (tmp_path / "log" / "devpi.log.1").read_text() == "a line\n" * 100


def test_static_site_never_keeps_a_page_past_its_removal(tmp_path):
    """Pages leave DIR by a commit or (mirror-backed) by their deadline: nothing in the site
    may serve one after that (an open_file_cache) or let clients keep it (an expires)."""
    out = tmp_path / "conf"
    p = gen_config("--serverdir", str(tmp_path / "srv"), "--outside-url", "https://pkg.example.org",
                   "--static-dir", str(tmp_path / "static"), "--output", str(out))
    assert p.returncode == 0, p.stderr
    site = (out / "nginx-devpi.conf").read_text()
    directives = [line.split("#")[0].strip() for line in site.splitlines()]
    assert not any(d.startswith("open_file_cache") for d in directives)
    pages = site[site.index("\\+simple/"):site.index("\\+f/")]
    assert 'add_header Cache-Control "max-age=0, must-revalidate";' in pages
    assert not any(d.startswith("expires") for d in (line.split("#")[0].strip() for line in pages.splitlines()))


@pytest.mark.parametrize("args, expected", [
    (("--outside-url", "ftp://x.example.org"), "not an outside URL"),
    (("--outside-url", "https://x.example.org/a;b"), "not an outside URL"),
    (("--outside-url", "https://x.example.org/$host"), "not an outside URL"),
    (("--outside-url", "https://user:pw@127.0.0.1"), "not an outside URL"),
    (("--outside-url", "https://x.example.org:99999"), "not an outside URL"),
    (("--outside-url", "https://x.example.org", "--port", "0"), "not a port"),
    (("--outside-url", "https://x.example.org", "--user", "a b"), "--user must not contain"),
    (("--outside-url", "https://x.example.org", "--tls-cert", "/x;include /etc/passwd"), "--tls-cert must not"),
    (("--outside-url", "https://x.example.org", "--logdir", "/var/log/x}"), "--logdir must not"),
])
def test_hostile_options_are_refused_in_one_line(tmp_path, args, expected):
    """Values end up in config files run as root: none may smuggle in syntax."""
    p = gen_config("--serverdir", str(tmp_path / "srv"), "--output", str(tmp_path / "out"), *args)
    assert p.returncode != 0
    assert expected in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert not (tmp_path / "out").exists()
