"""pytest plugin that ``devpi test`` injects into the tested project's tox runs.

It is copied as ``devpi_testing_plugin.py`` into a directory put on
``PYTHONPATH`` and loaded through ``PYTEST_PLUGINS``, so the project under
test needs neither a config change nor a dependency on devpi. It only
appends one JSON line per finished test to the file named by
``DEVPI_TESTRUN_EVENTS``; the ``devpi test`` runner tails that file and
streams the lines to the server while tox is still running. Standard
library only: it runs inside whatever virtualenv tox made.
"""
import json
import os
import platform
import time

_PATH = os.environ.get("DEVPI_TESTRUN_EVENTS")
_MAX_LONGREPR = 20_000


def _emit(data):
    if not _PATH:
        return
    data.update(env=os.environ.get("TOX_ENV_NAME", ""), python=platform.python_version(), time=time.time(),
                pid=os.getpid())
    line = json.dumps(data) + "\n"
    try:
        with open(_PATH, "a", encoding="utf-8") as f:  # one write per line: appends stay whole
            f.write(line)
    except OSError:
        pass  # reporting must never break the tests themselves


def _outcome(report):
    if hasattr(report, "wasxfail"):
        return "xfailed" if report.skipped else "xpassed"
    if report.failed and report.when != "call":
        return "error"
    return report.outcome


def pytest_runtest_logreport(report):
    """One event per test: its call phase, or the setup/teardown phase that failed or skipped it."""
    if not (report.when == "call" or report.failed or (report.skipped and report.when == "setup")):
        return
    longrepr = ""
    if report.failed or report.skipped:
        longrepr = str(report.longrepr or "")[:_MAX_LONGREPR]
    _emit({"nodeid": report.nodeid, "when": report.when, "outcome": _outcome(report),
           "duration": getattr(report, "duration", None), "longrepr": longrepr})
