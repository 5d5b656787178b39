"""What each directive of the generated static-view site costs nginx (issue 28).

One nginx, one server block per variant of the pages location that
``devpi gen-config --static-dir`` writes, each differing from the full site by one
directive; the same static pages (the shared bench's 40 project pages, or its
2,000-file page with ``--many``) stored as devpi's static view stores them (page and
gzipped copy); ``wrk`` with pip's headers on each variant in turn, the order rotated
every round. Prints each variant's median req/s and p99 and its paired ratio to the full
site. Everything on 127.0.0.1.

    python tests/bench/nginx_site_variants.py [--rounds 5] [--many]
"""
from __future__ import annotations

import argparse
import gzip
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from mirror_bench import harness_dir  # the shared bench, found as mirror_bench finds it

FORMAT_MAP = r'''map "$request_method $args|$http_accept" $devpi_page_format {
    default none;
    "~^(GET|HEAD) \|\s*$" html;
    "~*^(GET|HEAD) \|\s*application/vnd\.pypi\.simple\.(v1|latest)\+json\s*(,|$)" json;
    "~*^(GET|HEAD) \|\s*(text/html|text/\*|\*/\*)\s*(,|$)" html;
}'''
VARIANTS = {
    "site as generated": {},
    "+ disable_symlinks on": {"symlinks": True},
    "unbuffered access log": {"log": "plain"},
    "no access log": {"log": "off"},
    "no gzip_static": {"gzip_static": False},
    "tcp_nopush on": {"nopush": True},
}


def server_block(port: int, root: Path, logdir: Path, symlinks: bool = False, log: str = "buffered",
                 gzip_static: bool = True, nopush: bool = False) -> str:
    logs = {"buffered": f"access_log {logdir}/a{port}.log combined buffer=64k flush=1s;",
            "plain": f"access_log {logdir}/a{port}.log combined;", "off": "access_log off;"}[log]
    return f'''server {{ listen 127.0.0.1:{port}; {logs}
    root {root}; {"disable_symlinks on;" if symlinks else ""}
    location ~ ^(?<devpi_path>/[^/]+/[^/]+/\\+simple/(?:[^/]+/)?)$ {{
        types {{ text/html html; application/vnd.pypi.simple.v1+json json; }}
        add_header Vary "Accept, Accept-Encoding"; add_header Cache-Control "max-age=0, must-revalidate";
        {"gzip_static on;" if gzip_static else ""} {"" if nopush else "tcp_nopush off;"}
        gzip on; gzip_min_length 1400; gzip_types application/vnd.pypi.simple.v1+json;
        try_files ${{devpi_path}}index.$devpi_page_format =404;
    }}
}}
'''


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=4)
    ap.add_argument("--many", action="store_true", help="the 2,000-file page instead of the 40 pages")
    a = ap.parse_args()
    bench = harness_dir()
    sys.path.insert(0, str(bench))
    from harness import BENCH_ROOT
    from harness.upstream import BIG_PROJECT, NGINX_CONF, PYPI_TREE, build_overlay
    from harness.wrk import run_wrk

    work = Path(tempfile.mkdtemp(prefix="nginx-variants-"))
    work.chmod(0o755)  # nginx's workers (another user) read the pages
    root, logdir = work / "static", work / "log"
    logdir.mkdir()
    if a.many:
        build_overlay(BENCH_ROOT / "upstream-extra")
        sources = {BIG_PROJECT: BENCH_ROOT / "upstream-extra" / "simple" / BIG_PROJECT / "index.html"}
    else:
        sources = {p: PYPI_TREE / "simple" / p / "index.html" for p in (bench / "data" / "projects40.txt").read_text().split()}
    for project, src in sources.items():
        d = root / "root" / "pypi" / "+simple" / project
        d.mkdir(parents=True)
        body = src.read_bytes()  # the upstream's page stands in for devpi's JSON (similar size)
        (d / "index.json").write_bytes(body)
        if len(body) >= 1400:
            (d / "index.json.gz").write_bytes(gzip.compress(body, 6, mtime=0))
    ports = {name: 18400 + i for i, name in enumerate(VARIANTS)}
    servers = FORMAT_MAP + "\n" + "".join(server_block(ports[n], root, logdir, **kw) for n, kw in VARIANTS.items())
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (work / "tmp" / sub).mkdir(parents=True)
    conf = work / "nginx.conf"
    conf.write_text(NGINX_CONF.format(prefix=work, servers=servers))
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(work)])
    try:
        time.sleep(1)
        rps: dict[str, list[float]] = {n: [] for n in VARIANTS}
        p99: dict[str, list[float]] = {n: [] for n in VARIANTS}
        names = list(VARIANTS)
        for r in range(a.rounds):
            for n in names[r % len(names):] + names[:r % len(names)]:
                res = run_wrk([f"http://127.0.0.1:{ports[n]}/root/pypi/+simple/{p}/" for p in sources],
                              duration=a.seconds)
                if res["errors"]:
                    raise SystemExit(f"{n}: wrk saw errors: {res}")
                rps[n].append(res["rps"])
                p99[n].append(res["p99_ms"])
        base = rps["site as generated"]
        for n in names:
            ratios = [x / b for x, b in zip(rps[n], base, strict=True)]
            print(f"{n:24s} {statistics.median(rps[n]):9.0f} req/s ({min(rps[n]):.0f}-{max(rps[n]):.0f}) "
                  f"p99 {statistics.median(p99[n]):6.2f} ms  x generated {statistics.median(ratios):.2f} "
                  f"({min(ratios):.2f}-{max(ratios):.2f})")
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
