"""The compatibility matrix: which real tool can do what against our server.

Every interop test carries ``@pytest.mark.compat(tool, operation)`` (one or
more). The outcome of the test run decides each cell: passed -> "works",
xfail -> "known gap" with the xfail reason, anything else -> "FAILS". Known
gaps are ``pytest.mark.xfail(strict=True, reason=...)``, so a fixed gap turns
the run red until its mark is removed and the matrix regenerated.

The rows are declared once here (``OPERATIONS``, in display order), so a run
can tell whether it covered all of them. Only a run that did writes
``doc/compatibility.md``; a partial run (``-k``, one file) leaves it alone.
``python tests/interop/update_compat_doc.py`` runs the suite to regenerate it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from interop.toolenv import TOOLS

DOC = Path(__file__).resolve().parents[2] / "doc" / "compatibility.md"

# (tool, operation): what the row promises. Display order = this order.
OPERATIONS: dict[tuple[str, str], str] = {
    ("devpi-client", "use"): "`devpi use URL`, `use user/index`, `use -l`",
    ("devpi-client", "login"): "`devpi login --password`; a wrong password is refused",
    ("devpi-client", "logout"): "`devpi logout`: uploads are refused afterwards",
    ("devpi-client", "user -c"): "`devpi user -c NAME password=... email=...`, `user -l`",
    ("devpi-client", "index -c"): "`devpi index -c NAME bases=... volatile=False`",
    ("devpi-client", "index modify"): "`devpi index NAME key=value key+=value key-=value`",
    ("devpi-client", "index -l"): "`devpi index -l`",
    ("devpi-client", "index --delete"): "`devpi index --delete -y user/index`",
    ("devpi-client", "user -m"): "`devpi user -m NAME key=value password=...`, `user --delete`",
    ("devpi-client", "upload checkout"): "`devpi upload` in a git checkout (builds sdist + wheel)",
    ("devpi-client", "upload files"): "`devpi upload FILE...` of built archives",
    ("devpi-client", "upload docs"): "`devpi upload NAME-VER.doc.zip` (doc_upload)",
    ("devpi-client", "list"): "`devpi list`, `devpi list NAME`, `list -f` (failed tox results)",
    ("devpi-client", "getjson"): "`devpi getjson` of index, project and version",
    ("devpi-client", "push"): "`devpi push NAME==VER user/index`: files, docs, tox results; conflicts",
    ("devpi-client", "push to external"): "`devpi push NAME==VER pypi:REPO` (the server uploads to another server)",
    ("devpi-client", "install"): "`devpi install --venv DIR NAME`, `install -l`",
    ("devpi-client", "remove"): "`devpi remove NAME==VER` (and `--force` on a non-volatile index)",
    ("devpi-client", "test"): "`devpi test NAME`: tox run, toxresult upload, `list -t`",
    ("devpi-client", "refresh"): "`devpi refresh NAME`: mirror cache of the project refetched",
    ("devpi-client", "--version"): "`devpi --version` shows the server version",
    ("devpi-client", "behind a path prefix"): "use, login, upload, list, getjson, push, refresh, remove "
                                              "through a proxy at `/devpi` (`--outside-url`)",
    ("pip", "install with dependencies"): "`pip install` from a stage that merges root/pypi",
    ("pip", "install --require-hashes"): "`pip install --require-hashes -r requirements.txt`",
    ("pip", "download"): "`pip download` of a project and its dependencies",
    ("pip", "install from a read-restricted index"): "`pip install` with `http://user:PW@127.0.0.1:3141/user/index/+simple/` "
                                                      "from an index with `acl_read`",
    ("pip", "install behind a path prefix"): "`pip install` through a proxy at `/devpi` (`--outside-url`)",
    ("uv", "pip install with dependencies"): "`uv pip install` from a stage that merges root/pypi",
    ("uv", "pip install --require-hashes"): "`uv pip install --require-hashes -r requirements.txt`",
    ("uv", "pip install from a read-restricted index"): "`uv pip install` with Basic auth in the index URL "
                                                         "from an index with `acl_read`",
    ("uv", "pip compile"): "`uv pip compile --generate-hashes` resolution",
    ("twine", "upload with a scoped token to a read-restricted index"): "`twine upload -u __token__ -p TOKEN` "
        "to an index with `acl_read`; pip installs with a read token in the URL, not with the upload token",
    ("twine", "upload"): "`twine upload` (password and login token; identical re-upload; conflict)",
    ("twine", "check"): "`twine check` of the archives served back by the index",
    ("uv", "publish"): "`uv publish` (with `--check-url` for a re-publish)",
    ("tox", "PIP_INDEX_URL"): "tox 4 env installs a dependency that only our index has",
    ("tox-uv", "UV_INDEX_URL"): "tox 4 with tox-uv, the same through uv",
    ("pypi-simple", "HTML vs JSON project page"): "same files, hashes, yanked flags, metadata in both formats",
    ("pypi-simple", "HTML vs JSON project list"): "same project names in both formats",
}

# Behaviour of the tools themselves that users of any devpi server meet (found by these tests).
TOOL_NOTES = [
    "twine 6+ refuses `--skip-existing` for repositories it does not know (any devpi server). It is not "
    "needed: an identical re-upload to a non-volatile index answers 200.",
    "`devpi getjson /absolute/path` joins the path to the host, not to a path prefix the server lives "
    "under; behind a prefix, use a path relative to the index or a full URL.",
    "`devpi test` runs tox from the unpacked sdist. setuptools leaves `tox.ini` out of sdists: name one with "
    "`--fallback-ini PATH`, or run `devpi test` in the project's checkout, whose tox config is then used.",
    "`devpi upload` from a checkout runs `python -m build`, whose isolated build environment fetches "
    "setuptools through pip's own configuration, not through the devpi index; offline, use "
    "`devpi upload --no-isolation` with the build backend installed next to the client.",
]

# Options of devpi-client 7.3 our `devpi` deliberately refuses: (command, option) -> why ("" for
# the generic options). tests/client/test_cli_option_parity.py checks that every other option of
# 7.3's --help parses with our parser, and that each entry here is still refused.
OPTION_EXCEPTIONS: dict[tuple[str, str], str] = {}

# Options of devpi-client 7.3 we accept but that act differently, and why (rendered with the above).
OPTION_DIFFERENCES = [
    "`devpi upload --no-vcs`, `--setupdir-only` (and these keys of `[tool.devpi.upload]` / `[devpi:upload]`): "
    "accepted, and change nothing: the checkout is always built as it is. devpi-client by default built a "
    "copy holding only the VCS-tracked files, which needs check-manifest and the VCS tools; `python -m build` "
    "already builds the sdist from what the build backend declares.",
    "`devpi upload --formats` (and `formats` in `[devpi:upload]`): `sdist`, `sdist.tgz`, `sdist.gztar` and "
    "`bdist_wheel` map to `--sdist` / `--wheel` with a deprecation warning; formats `python -m build` cannot "
    "make (`bdist_egg`, `sdist.zip`, ...) are refused with one line, where devpi-client ran `setup.py` for them "
    "(deprecated by setuptools).",
    "`devpi upload --from-dir` also takes a directory (`--from-dir DIR`); either way directories are searched "
    "recursively, as devpi-client's flag did.",
    "`devpi install -r` also takes a file (pip's `-r FILE`); in devpi-client's flag form every positional "
    "naming an existing file is read as a requirements file.",
    "`devpi test` tests one file per release: the sdist, or the first file `--select` matches; devpi-client "
    "also tested every universal wheel next to the sdist. `--list` shows that file and the tox config it would "
    "use.",
    "`devpi test --fallback-ini` works as in devpi-client (inside the unpacked sdist, else a file here); in "
    "addition, when no config is found, a checkout of the tested project in the current directory lends its "
    "tox config, and a release without any config opens no test run on the server.",
    "`devpi test --toxargs` is accepted as another spelling of `--tox-args`: devpi-client's own help names it, "
    "but its parser refused it.",
    "`devpi use --local` keeps the server/index in `$VIRTUAL_ENV/devpi.json` as devpi-client does; logins "
    "stay in the client dir.",
    "`devpi use -u USER` limits `use -l` to USER's indexes; without `-l` it only says whether the login is "
    "USER's (we keep one login per server; devpi-client could switch between several).",
    "`devpi use -t/--pip-set-trusted` writes or removes pip's `trusted-host` only; uv's config gets no "
    "insecure-host setting.",
]

# Answers of our server that still differ from devpi-server 6.20 where clients or scripts look
# at them, and why (the ones that used to differ are tests in tests/client/test_cli_habits.py).
SERVER_DIFFERENCES = [
    "An error's HTTP reason phrase is its message (`401 authentication failed: wrong user name, password or "
    "token`), where the original sends the standard phrase (`Unauthorized`) for some: devpi-client and twine "
    "print the reason, so the user reads why. The JSON body carries the same message.",
    "Uploading or pushing bytes identical to a file already on a non-volatile index is a no-op 200 "
    "(`skip_identical` in a push's log), where the original answers 409: a re-run CI job does not fail.",
    "Requests that need a login, made without one, are 401 with a `WWW-Authenticate` challenge (so pip, uv and "
    "twine ask for credentials); only `PATCH /USER` is 403 as in the original.",
    "A mirror created without `mirror_url` asks nobody anything and serves nothing until one is set; the "
    "original accepts it too but fails when it is used.",
]

WORKS, GAP, FAILS, NOT_RUN = "works", "known gap", "FAILS", "not run"
_RANK = {WORKS: 0, GAP: 1, NOT_RUN: 2, FAILS: 3}


@dataclass
class Cell:
    status: str = NOT_RUN
    notes: list[str] = field(default_factory=list)
    tests: list[str] = field(default_factory=list)

    def add(self, status: str, note: str, nodeid: str) -> None:
        if _RANK[status] > _RANK[self.status] or self.status == NOT_RUN:
            self.status = status
        if note and note not in self.notes:
            self.notes.append(note)
        self.tests.append(nodeid)


def keys_of(item: pytest.Item) -> list[tuple[str, str]]:
    keys = []
    for mark in item.iter_markers("compat"):
        key = (mark.args[0], mark.args[1])
        if key not in OPERATIONS:
            raise pytest.UsageError(f"{item.nodeid}: compat{key} is not in compat.OPERATIONS")
        keys.append(key)
    return keys


def outcome(report: pytest.TestReport) -> tuple[str, str] | None:
    """(status, note) for a report that decides the test, or None."""
    if report.when == "call" or (report.when == "setup" and not report.passed):
        if hasattr(report, "wasxfail"):
            return GAP, report.wasxfail.removeprefix("reason: ")
        if report.passed:
            return WORKS, ""
        if report.skipped:
            return FAILS, "skipped: " + str(report.longrepr[-1] if isinstance(report.longrepr, tuple) else "")
        if "XPASS(strict)" in str(report.longrepr):
            return FAILS, "a known gap now passes: remove its xfail mark"
        return FAILS, f"test failed in {report.when}: see {report.nodeid}"
    return None


class Recorder:
    """Outcomes seen by one pytest process; mergeable across xdist workers via files."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, str, str]] = []  # tool, op, status, note, nodeid

    def record(self, report: pytest.TestReport) -> None:
        result = outcome(report)
        if result is None:
            return
        for name, value in report.user_properties:
            if name == "compat":
                tool, op = json.loads(value)
                self.events.append((tool, op, *result, report.nodeid))

    def cells(self) -> dict[tuple[str, str], Cell]:
        cells = {k: Cell() for k in OPERATIONS}
        for tool, op, status, note, nodeid in self.events:
            cells[(tool, op)].add(status, note, nodeid)
        return cells

    def merge_into(self, rundir: Path, me: str) -> Recorder:
        """Write this process's events to *rundir* and return everything recorded there so far."""
        rundir.mkdir(parents=True, exist_ok=True)
        (rundir / f"{me}.json").write_text(json.dumps(self.events))
        merged = Recorder()
        for path in sorted(rundir.glob("*.json")):
            merged.events.extend(tuple(e) for e in json.loads(path.read_text()))
        return merged

    @property
    def complete(self) -> bool:
        return all(c.status != NOT_RUN for c in self.cells().values())


def render(cells: dict[tuple[str, str], Cell], server_version: str) -> str:
    lines = [
        "# Compatibility with existing clients",
        "",
        "<!-- GENERATED by tests/interop (compat.py) at the end of a full interop test run;",
        "     do not edit by hand: run `python tests/interop/update_compat_doc.py`. -->",
        "",
        f"Each row is checked by driving the real tool against a running devpi {server_version} server",
        "(`tests/interop/`, pytest marker `interop`). Every tool runs from its own virtualenv at the",
        "pinned version shown. *works*: the test passed. *known gap*: the test is marked as an",
        "expected failure with the reason given; it turns the suite red once the gap is fixed.",
        "",
        "| tool | version | operation | status | notes |",
        "|---|---|---|---|---|",
    ]
    for (tool, op), cell in cells.items():
        version = TOOLS[tool].version if tool in TOOLS else ""
        what = OPERATIONS[(tool, op)]
        status = {WORKS: "works", GAP: "**known gap**", FAILS: "**FAILS**", NOT_RUN: "not run"}[cell.status]
        notes = "; ".join(n.replace("|", "\\|").replace("\n", " ") for n in cell.notes)
        lines.append(f"| {tool} | {version} | {op} — {what} | {status} | {notes} |")
    gaps = [(k, c) for k, c in cells.items() if c.status != WORKS]
    lines += ["", f"{len(cells) - len(gaps)} of {len(cells)} operations work."]
    if gaps:
        lines += ["", "Not working:", ""]
        lines += [f"- {tool} `{op}`: {c.status} ({'; '.join(c.notes) or 'no reason recorded'})"
                  for (tool, op), c in gaps]
    lines += ["", "## Options of devpi-client 7.3", "",
              f"Every option of every command of devpi-client {TOOLS['devpi-client'].version} (as its `--help` lists "
              "them) is accepted by our `devpi`, checked by `tests/client/test_cli_option_parity.py`, except:", ""]
    lines += [f"- `devpi {cmd + ' ' if cmd else ''}{opt}`: {why}" for (cmd, opt), why in OPTION_EXCEPTIONS.items()]
    lines += [] if OPTION_EXCEPTIONS else ["- none."]
    lines += ["", "Accepted, but acting differently:", ""] + [f"- {d}" for d in OPTION_DIFFERENCES]
    lines += ["", "## Answers of devpi-server 6.x", "",
              "Where our server's answers still differ from the original's in what clients and scripts see:", ""]
    lines += [f"- {d}" for d in SERVER_DIFFERENCES]
    lines += ["", "## Notes on the tools", ""] + [f"- {note}" for note in TOOL_NOTES]
    return "\n".join(lines) + "\n"
