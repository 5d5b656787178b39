"""``devpi gen-config``: an nginx site, a systemd unit and a logrotate file for one server.

Each file is written from the options the server will run with, with comments saying why
each setting is there, so an admin can adapt it rather than copy it blind. Nothing here
starts, installs or reloads anything: the files land in ``--output`` (default
``SERVERDIR/gen-config``), and doc/operations.md ("Running as a service") says where they go.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import shutil
import sys
from pathlib import Path
from urllib.parse import urlsplit

from ..config import parse_size

UPLOAD_SLACK = 16 << 20  # bytes nginx accepts beyond --max-upload-size: the form fields around the file
FILES = ("nginx-devpi.conf", "devpi.service", "devpi.logrotate")


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--serverdir", type=Path,
                        default=Path(os.environ.get("DEVPI_SERVERDIR", "~/.devpi/server")),
                        help="the server's state directory (default: ~/.devpi/server, or $DEVPI_SERVERDIR)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address the server listens on, nginx proxies to it (default: 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=3141, help="port the server listens on (default: 3141)")
    parser.add_argument("--outside-url", metavar="URL", type=_outside_url, required=True,
                        help="URL clients use, served by nginx: http(s)://NAME[:PORT][/PATH]")
    parser.add_argument("--storage", metavar="URL", default=None,
                        help="the server's --storage, if not the SQLite file in the server dir")
    parser.add_argument("--max-upload-size", type=parse_size, default=parse_size("512M"),
                        help="the server's --max-upload-size; nginx accepts bodies that large (default: 512M)")
    parser.add_argument("--user", default="devpi", help="system user the service runs as (default: devpi)")
    parser.add_argument("--logdir", type=Path, default=Path("/var/log/devpi"),
                        help="where the service's log goes, rotated by the logrotate file (default: /var/log/devpi)")
    parser.add_argument("--nginx-logdir", type=Path, default=Path("/var/log/nginx"),
                        help="where nginx writes the site's access and error logs (default: /var/log/nginx)")
    parser.add_argument("--devpi", metavar="PATH", default=None,
                        help="the devpi command ExecStart runs (default: the one next to this Python)")
    parser.add_argument("--tls-cert", metavar="PATH", default="/etc/ssl/devpi/fullchain.pem",
                        help="certificate chain for an https outside URL (default: a placeholder path)")
    parser.add_argument("--tls-key", metavar="PATH", default="/etc/ssl/devpi/privkey.pem",
                        help="its private key (default: a placeholder path)")
    parser.add_argument("--static-dir", metavar="DIR", type=Path, default=None,
                        help="the server's --static-dir: nginx answers public pages and files from it "
                             "and asks the server for the rest (default: none, nginx proxies everything)")
    parser.add_argument("--output", metavar="DIR", type=Path, default=None,
                        help="where to write the files (default: SERVERDIR/gen-config)")


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a port: {text!r}")
    return value


def _outside_url(text: str) -> str:
    parts = urlsplit(text)
    try:
        parts.port  # noqa: B018 (it raises on a bad port)
    except ValueError:
        parts = parts._replace(scheme="")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment \
            or parts.username or any(c in text for c in " \t\n;{}'\"\\$"):
        raise argparse.ArgumentTypeError(
            f"not an outside URL: {text!r} (http(s)://NAME[:PORT][/PATH], no query, no credentials)")
    return text.rstrip("/")


def _safe_value(what: str, text: str) -> str:
    """A value written into a config file: no quoting tricks, no newlines, no nginx syntax."""
    if not text or any(c in text for c in " \t\r\n;{}'\"\\$#"):
        raise SystemExit(f"devpi gen-config: error: {what} must not contain spaces, quotes or ;{{}}$#: {text!r}")
    return text


def devpi_command(given: str | None) -> str:
    """The absolute path of the devpi command the service runs."""
    if given:
        return str(Path(given).expanduser().resolve())
    beside = Path(sys.executable).parent / "devpi"
    if beside.exists():
        return str(beside)
    found = shutil.which("devpi")
    if found:
        return str(Path(found).resolve())
    raise SystemExit("devpi gen-config: error: no devpi command next to this Python or on PATH; give --devpi")


def web_static_dir() -> Path | None:
    """The web UI's static files (a plugin the server does not import: found, not imported)."""
    spec = importlib.util.find_spec("devpi.web")
    if spec is None or not spec.origin:
        return None
    static = Path(spec.origin).parent / "static"
    return static if static.is_dir() else None


def _human_size(n: int) -> str:
    return f"{-(-n // (1 << 20))}m"


def nginx_site(args: argparse.Namespace) -> str:
    out = urlsplit(args.outside_url)
    https = out.scheme == "https"
    port = out.port or (443 if https else 80)
    prefix = out.path.rstrip("/")  # "" or "/devpi"
    upstream_host = f"[{args.host}]" if ":" in args.host else args.host
    if args.host in ("0.0.0.0", "::"):
        upstream_host = "127.0.0.1"
    backend = f"http://{upstream_host}:{args.port}"
    body = _human_size(args.max_upload_size + UPLOAD_SLACK)
    static = web_static_dir()
    lines = [
        f"# nginx site for devpi at {args.outside_url} (written by `devpi gen-config`).",
        "# Put it in /etc/nginx/sites-enabled/ (or conf.d/), then `nginx -t && systemctl reload nginx`.",
        "# It goes inside nginx's http { } block: server blocks only, nothing global.",
        "",
        *(_FORMAT_MAP if args.static_dir is not None else []),
        "# The devpi server: it listens on loopback and believes X-Outside-Url and X-Forwarded-*",
        "# only from its --trusted-proxy addresses (default: loopback, i.e. this nginx).",
        "upstream devpi_server {",
        f"    server {upstream_host}:{args.port};",
        "    keepalive 16;  # connections kept open to devpi: no TCP handshake per request",
        "}",
        "",
    ]
    if https and port == 443:
        lines += [
            "# Plain http only redirects to https.",
            "server {",
            "    listen 80;",
            "    listen [::]:80;",
            f"    server_name {out.hostname};",
            "    return 301 https://$host$request_uri;",
            "}",
            "",
        ]
    listen = f"{port} ssl" if https else f"{port}"
    host_listen = f"{out.hostname}:{port}" if out.hostname in ("127.0.0.1", "localhost") else None
    lines += ["server {"]
    if host_listen:
        lines += [f"    listen {out.hostname}:{listen};"]
    else:
        lines += [f"    listen {listen};", f"    listen [::]:{listen};"]
    lines += [f"    server_name {out.hostname};", ""]
    if https:
        lines += [
            "    # TLS: replace these placeholder paths with your certificate (e.g. from certbot).",
            f"    ssl_certificate     {_safe_value('--tls-cert', args.tls_cert)};",
            f"    ssl_certificate_key {_safe_value('--tls-key', args.tls_key)};",
            "    ssl_protocols TLSv1.2 TLSv1.3;",
            "    ssl_session_cache shared:devpi_tls:10m;",
            "",
        ]
    lines += [
        "    # Uploads: nginx's default limit is 1m; devpi refuses bodies above its own",
        f"    # --max-upload-size ({args.max_upload_size} bytes) itself, with a JSON message.",
        f"    client_max_body_size {body};",
        "",
        "    # buffered: one write per 64 KB or second, not one per request (a warm page costs",
        "    # nginx little more than that write)",
        f"    access_log {args.nginx_logdir / 'devpi.access.log'} combined buffer=64k flush=1s;",
        f"    error_log  {args.nginx_logdir / 'devpi.error.log'};",
        "",
    ]
    if static is not None:
        lines += [
            "    # The web UI's style sheet and script, straight from the installed package.",
            f"    location ^~ {prefix}/+static/ {{",
            f"        alias {static}/;",
            "        expires 1h;",
            "    }",
            "",
        ]
    if prefix:
        lines += [f"    location = {prefix} {{", f"        return 301 {prefix}/;", "    }", ""]
    if args.static_dir is not None:
        lines += static_locations(args, prefix)
    if args.static_dir is None:
        lines += [
            "    # Release files (+f/) are NOT served from the blob directory by nginx: devpi checks",
            "    # every read against the index's acl_read, fetches mirror files on first use and",
            "    # checks their hashes. So everything else goes to devpi, which streams files itself.",
        ]
    else:
        lines += ["    # Everything else (uploads, the API, restricted and mirror-backed indexes) goes to devpi."]
    lines += [
        f"    location {prefix}/ {{",
        f"        proxy_pass http://devpi_server/;  # ({backend}, the prefix {prefix or '/'} taken off)",
        *_proxy_settings(args),
        "    }",
        "",
        "    # /+metrics: devpi answers only clients from --metrics-allow (default loopback)",
        "    # and root. /+health is open: point the load balancer's health check at it.",
        "}",
    ]
    return "\n".join(lines) + "\n"


def _proxy_settings(args: argparse.Namespace) -> list[str]:
    return [
        "        proxy_http_version 1.1;",
        '        proxy_set_header Connection "";  # keep-alive to the upstream block',
        "        proxy_set_header Host $http_host;",
        f"        proxy_set_header X-Outside-Url {args.outside_url};  # absolute URLs devpi writes",
        "        proxy_set_header X-Forwarded-Proto $scheme;",
        "        # the client's address as nginx saw it (not appended to what the client sent):",
        "        # login throttling and --metrics-allow count by it",
        "        proxy_set_header X-Forwarded-For $remote_addr;",
        "        # files are streamed: no buffering of answers or uploads in nginx's temp files",
        "        proxy_buffering off;",
        "        proxy_request_buffering off;",
        "        # /+changelog long-polls wait up to 30 s; big uploads and downloads take longer",
        "        proxy_read_timeout 300s;",
        "        proxy_send_timeout 300s;",
    ]


# PEP 691 negotiation as the server does it (repos/simple_formats.py), for the Accept headers
# that decide it by their first entry: with no q= that entry has q=1, and a later one never
# beats it (ties go to the first). Anything else (q= on the first, ?format=, other methods)
# is "none": no static file has that name, so the server answers.
_FORMAT_MAP = [
    "map \"$request_method $args|$http_accept\" $devpi_page_format {",
    "    default none;",
    "    \"~^(GET|HEAD) \\|\\s*$\" html;",
    "    \"~*^(GET|HEAD) \\|\\s*application/vnd\\.pypi\\.simple\\.(v1|latest)\\+json\\s*(,|$)\" json;",
    "    \"~*^(GET|HEAD) \\|\\s*(text/html|text/\\*|\\*/\\*)\\s*(,|$)\" html;",
    "}",
    "# A file's JSON metadata (Accept: application/json) and every method but GET and HEAD",
    "# go to the server: the prefix names no directory of the static view.",
    "map \"$request_method|$http_accept\" $devpi_file_prefix {",
    "    \"~*^(GET|HEAD)\\|\\s*application/json\" /+server;",
    "    \"~^(GET|HEAD)\\|\" \"\";",
    "    default /+server;",
    "}",
    "",
]


def static_locations(args: argparse.Namespace, prefix: str) -> list[str]:
    """The locations answering from the server's --static-dir (server/repos/static_view.py)."""
    static = _safe_value("--static-dir", str(args.static_dir))
    if not args.static_dir.is_absolute():
        raise SystemExit("devpi gen-config: error: --static-dir must be an absolute path")
    quoted = prefix.replace(".", "\\.")
    return [
        f"    # The static view: devpi keeps public indexes' pages and files in {static}",
        "    # (devpi server --static-dir), removing what a write changes before the write is",
        "    # answered, and mirror-backed pages by their deadline (their cache life). A file",
        "    # that is not there (yet) is asked of devpi, which answers and puts it there.",
        "    # No open_file_cache: it would serve a removed or expired page for its validity.",
        f"    root {static};",
        "    # Symlinks: devpi never makes one in DIR and renames over one planted there; only",
        "    # devpi's user (or root) can write DIR. nginx's disable_symlinks would re-walk every",
        "    # path with O_NOFOLLOW on each request: x0.62 a warm page's req/s (nginx_site_variants.py).",
        "",
        "    # /<user>/<index>/+simple/[<project>/]: index.html or index.json by the Accept header",
        f"    location ~ ^{quoted}(?<devpi_path>/[^/]+/[^/]+/\\+simple/(?:[^/]+/)?)$ {{",
        "        types { text/html html; application/vnd.pypi.simple.v1+json json; }",
        "        add_header Vary \"Accept, Accept-Encoding\";",
        "        # clients revalidate every time (ETag): a page leaves DIR by a commit or its deadline",
        "        add_header Cache-Control \"max-age=0, must-revalidate\";",
        "        # pages of 1400 bytes or more are kept gzipped beside themselves (index.json.gz):",
        "        # sent as they are to clients that take gzip, never compressed per request",
        "        gzip_static on;",
        "        # no TCP_CORK for pages: with it one answer in a hundred waited for a delayed",
        "        # ACK (p99 40 ms on a 2,000-file page; 2 ms without)",
        "        tcp_nopush off;",
        "        gzip on;",
        "        gzip_min_length 1400;",
        "        gzip_types application/vnd.pypi.simple.v1+json;",
        "        # (a named capture: the maps' regular expressions overwrite $1)",
        "        try_files ${devpi_path}index.$devpi_page_format @devpi;",
        "    }",
        "",
        "    # /<user>/<index>/+f/...: release files (immutable, named by their hash)",
        f"    location ~ ^{quoted}(?<devpi_path>/[^/]+/[^/]+/\\+f/.+)$ {{",
        "        types { application/zip zip egg; application/gzip gz tgz; application/x-bzip2 bz2;",
        "                application/x-xz xz; application/x-tar tar; }",
        "        default_type application/octet-stream;",
        "        add_header Cache-Control \"max-age=365000000, immutable, public\";",
        "        add_header X-Content-Type-Options nosniff;",
        "        add_header Content-Security-Policy \"default-src 'none'; sandbox\";",
        "        add_header Content-Disposition attachment;",
        "        try_files $devpi_file_prefix$devpi_path @devpi;",
        "    }",
        "",
        "    location @devpi {",
        *([f"        rewrite ^{quoted}(/.*)$ $1 break;  # the prefix taken off"] if prefix else []),
        "        proxy_pass http://devpi_server;",
        *_proxy_settings(args),
        "    }",
        "",
    ]


def systemd_unit(args: argparse.Namespace, serverdir: Path) -> str:
    devpi = devpi_command(args.devpi)
    cmd = [devpi, "server", "--serverdir", str(serverdir), "--host", args.host, "--port", str(args.port),
           "--outside-url", args.outside_url]
    if args.storage:
        cmd += ["--storage", args.storage]
    if args.static_dir is not None:
        cmd += ["--static-dir", str(args.static_dir)]
    if args.max_upload_size != parse_size("512M"):
        cmd += ["--max-upload-size", str(args.max_upload_size)]
    exec_start = " ".join(shlex.quote(_safe_value("a path or option", c)) for c in cmd)
    log = args.logdir / "devpi.log"
    under_home = any(str(serverdir).startswith(p) for p in ("/home/", "/root/", "/run/user/"))
    return "\n".join([
        "# systemd unit for devpi (written by `devpi gen-config`).",
        "# Install: cp devpi.service /etc/systemd/system/ && systemctl daemon-reload",
        "#          && systemctl enable --now devpi",
        f"# On the very first start, give root a password: run once by hand as {args.user}:",
        f"#   {devpi} server --serverdir {serverdir} --root-passwd '...' (then Ctrl-C)",
        "",
        "[Unit]",
        "Description=devpi package index server",
        "After=network-online.target" + (" postgresql.service" if (args.storage or "").startswith("postgresql")
                                         else ""),
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=exec",
        f"User={_safe_value('--user', args.user)}",
        f"Group={args.user}",
        f"ExecStart={exec_start}",
        "# No ExecReload: devpi reads its options at start only. `systemctl restart devpi` stops it",
        "# (SIGTERM: requests in flight get 3 s to finish) and starts it again within a second.",
        "KillSignal=SIGTERM",
        "TimeoutStopSec=15",
        "Restart=on-failure",
        "RestartSec=2",
        "# One connection is one descriptor: room for --max-connections (default 4096).",
        "LimitNOFILE=65536",
        "# The log (stderr: one line per request, warnings), rotated by devpi.logrotate.",
        f"StandardOutput=append:{log}",
        f"StandardError=append:{log}",
        f"LogsDirectory={args.logdir.name}" if args.logdir.parent == Path("/var/log") else
        f"# (create {args.logdir} writable by {args.user})",
        "",
        "# Hardening: devpi writes only to its server dir (and the log).",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        f"ProtectHome={'read-only' if under_home else 'yes'}",
        f"ReadWritePaths={serverdir}" + (f" {args.static_dir}" if args.static_dir is not None else ""),
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectControlGroups=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]) + "\n"


def logrotate_file(args: argparse.Namespace) -> str:
    log = args.logdir / "devpi.log"
    return "\n".join([
        "# logrotate for devpi's log (written by `devpi gen-config`): /etc/logrotate.d/devpi",
        "# copytruncate: the server keeps its log open (systemd opened it) and has no signal to",
        "# reopen it, so the file is copied and emptied in place (a line written in between may",
        "# be lost, never the server's place in the file).",
        f"{log} {{",
        "    daily",
        "    rotate 14",
        "    maxsize 200M",
        "    compress",
        "    delaycompress",
        "    missingok",
        "    notifempty",
        "    copytruncate",
        f"    su {args.user} {args.user}",
        "}",
    ]) + "\n"


def run(args: argparse.Namespace) -> int:
    serverdir = args.serverdir.expanduser().resolve()
    _safe_value("--serverdir", str(serverdir))
    _safe_value("--logdir", str(args.logdir))
    _safe_value("--nginx-logdir", str(args.nginx_logdir))
    _safe_value("--host", args.host)
    if args.logdir.is_absolute() is False:
        raise SystemExit("devpi gen-config: error: --logdir must be an absolute path")
    output = (args.output or serverdir / "gen-config").expanduser()
    texts = {FILES[0]: nginx_site(args), FILES[1]: systemd_unit(args, serverdir), FILES[2]: logrotate_file(args)}
    output.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (output / name).write_text(text)
        print(f"wrote {output / name}")
    return 0
