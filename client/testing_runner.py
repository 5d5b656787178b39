"""Run tox on one machine for ``devpi test`` and report what happens as it happens.

This module is the part of ``devpi test`` that runs where the tests run:
in the ``devpi`` process itself, or on an execnet gateway (``--tx``), to
which it is sent as source with ``remote_exec``. It therefore imports
nothing but the standard library, and never devpi: the remote interpreter
needs neither devpi nor execnet installed.

``run(spec, emit)`` unpacks the sdist, installs the pytest plugin (source in
``spec["plugin_source"]``) into a private directory, runs
``tox --installpkg FILE --recreate --result-json ... -c CONFIG`` with the
environment ``devpi test`` computed (index URLs with credentials), tails the
plugin's event file while tox runs and calls ``emit("event", dict)`` per
test, ``emit("out", line)`` per output line when capturing, and returns
``{"exitcode": ..., "toxresult": ...}``, which it also emits as "done" before
cleaning up (removing tox's virtualenvs takes a while).
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

PLUGIN_MODULE = "devpi_testing_plugin"
INJECTED_VARS = ("DEVPI_TESTRUN_EVENTS", "PYTEST_PLUGINS", "PYTHONPATH")
CONFIG_NAMES = ("tox.ini", "pyproject.toml", "setup.cfg", "tox.toml")

Emit = Callable[[str, Any], None]


class RunnerError(Exception):
    """A problem before or around tox (not a test failure): reported as one line."""


def describe() -> dict[str, str]:
    """Where this runner is: tagged onto the run the server records."""
    return {"host": socket.gethostname(), "platform": sys.platform, "python": sys.version,
            "executable": sys.executable}


def tox_command() -> tuple[list[str], bool]:
    """tox of this interpreter if it has one; else a tox on PATH, pinned to this interpreter.

    The flag says whether tox's default base python must be pinned to
    ``sys.executable`` (a foreign tox would otherwise test its own python).
    """
    if importlib.util.find_spec("tox") is not None:
        return [sys.executable, "-m", "tox"], False
    exe = shutil.which("tox")
    if exe:
        return [exe], True
    raise RunnerError(f"tox is not installed for {sys.executable} and there is no 'tox' on PATH")


def unpack(archive: Path, dest: Path) -> Path:
    """Extract an sdist safely and return its project directory (the single top-level dir)."""
    dest.mkdir(parents=True, exist_ok=True)
    name = archive.name
    try:
        if name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                for member in zf.namelist():
                    target = (dest / member).resolve()
                    if not str(target).startswith(str(dest.resolve())):
                        raise RunnerError(f"{name}: refusing to extract {member!r} outside the target dir")
                zf.extractall(dest)
        else:
            with tarfile.open(archive) as tf:
                if hasattr(tarfile, "data_filter"):
                    tf.extractall(dest, filter="data")
                else:  # pragma: no cover - interpreters without PEP 706
                    for member in tf.getmembers():
                        if member.name.startswith(("/", "..")) or ".." in Path(member.name).parts:
                            raise RunnerError(f"{name}: refusing to extract {member.name!r}")
                    tf.extractall(dest)
    except (tarfile.TarError, zipfile.BadZipFile, OSError) as e:
        raise RunnerError(f"cannot unpack {name}: {e}") from None
    entries = [p for p in dest.iterdir() if not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return dest


def locate_config(projdir: Path) -> Path | None:
    """The tox config tox itself would pick in ``projdir`` (same order), or None."""
    for name in CONFIG_NAMES:
        path = projdir / name
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if name == "pyproject.toml" and "[tool.tox" not in text:
            continue
        if name == "setup.cfg" and "[tox:tox]" not in text:
            continue
        return path
    return None


def find_config(projdir: Path, given: str | None) -> Path:
    """The config named by ``-c``/``--fallback-ini`` (relative to the package root), else tox's own pick.

    ``devpi test`` checks this before it opens a run (so a missing config never shows on the
    server); the errors here are the last line of defence for a gateway that unpacks differently.
    """
    if given:
        path = Path(given)
        path = path if path.is_absolute() else projdir / path
        if not path.is_file():
            raise RunnerError(f"tox config {given} not found in {projdir.name}")
        return path
    found = locate_config(projdir)
    if found is None:
        raise RunnerError(f"no tox config (tox.ini, pyproject.toml [tool.tox], setup.cfg [tox:tox], tox.toml) "
                          f"in {projdir.name}: pass --fallback-ini PATH")
    return found


def section_envs(config: Path) -> list[str] | None:
    """Envs that have their own section in the config (only those can shadow the base pass_env).

    Read from the file itself, which is much cheaper than asking tox; None when the
    format is not understood here (the caller then asks ``tox l``).
    """
    text = config.read_text(encoding="utf-8", errors="replace")
    if config.suffix == ".toml":
        try:
            import tomllib
        except ImportError:  # interpreters before 3.11
            return None
        try:
            data = tomllib.loads(text)
        except ValueError:
            return None
        if config.name == "pyproject.toml":
            tox_section = data.get("tool", {}).get("tox", {})
            if "legacy_tox_ini" in tox_section:
                return _ini_envs(tox_section["legacy_tox_ini"])
            data = tox_section
        return list((data.get("env") or {}).keys())
    return _ini_envs(text)


def _ini_envs(text: str) -> list[str] | None:
    import configparser

    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read_string(text)
    except configparser.Error:
        return None
    return [s.split(":", 1)[1].strip() for s in parser.sections() if s.startswith("testenv:")]


def env_names(tox: list[str], config: Path, cwd: Path, env: dict[str, str], toxargs: list[str]) -> list[str]:
    """Envs whose own sections may need the pass-through override, plus any -e given."""
    names = section_envs(config)
    if names is None:
        names = []
        try:
            out = subprocess.run([*tox, "l", "--no-desc", "-c", str(config)], cwd=cwd, env=env, timeout=300,
                                 capture_output=True, text=True).stdout
            names = [line.strip() for line in out.splitlines() if line.strip() and " " not in line.strip()]
        except (OSError, subprocess.SubprocessError):
            pass
    for i, arg in enumerate(toxargs):
        if arg == "--":
            break
        value = toxargs[i + 1] if arg == "-e" and i + 1 < len(toxargs) else (
            arg[len("-e"):] if arg.startswith("-e") and len(arg) > 2 else None)
        if value:
            names += [n.strip() for n in value.split(",") if n.strip() and n.strip() != "ALL"]
    return list(dict.fromkeys(names))


def overrides(names: list[str], config: Path, pin_python: str | None) -> list[str]:
    """``-x`` options that let our variables through tox's env isolation (base and every env).

    tox names the sections differently per format: ``testenv`` / ``testenv:NAME`` (ini, also
    pyproject's legacy_tox_ini), ``env_run_base`` / ``env.NAME`` (tox.toml), the same under
    ``tool.tox.`` (pyproject.toml). Overrides of sections a config does not have are ignored.
    """
    keys = ",".join(INJECTED_VARS)
    toml = config.suffix == ".toml"
    ns = "tool.tox." if config.name == "pyproject.toml" else ""
    out: list[str] = []

    def add(setting: str, section: str | None) -> None:
        out.extend(["-x", f"testenv.{setting}" if section is None else f"testenv:{section}.{setting}"])
        if toml:
            out.extend(["-x", f"{ns}env_run_base.{setting}" if section is None else f"{ns}env.{section}.{setting}"])

    add(f"pass_env+={keys}", None)
    for name in names:
        add(f"pass_env+={keys}", name.replace(".", "\\."))
    if pin_python:
        add(f"base_python={pin_python}", None)
    return out


class EventTail(threading.Thread):
    """Follows the plugin's event file and emits each complete line as soon as it appears."""

    def __init__(self, path: Path, emit: Emit, interval: float = 0.05):
        super().__init__(name="devpi-test-events", daemon=True)
        self.path = path
        self.emit = emit
        self.interval = interval
        self.stopping = threading.Event()
        self.pos = 0
        self.buf = b""

    def poll(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except OSError:
            return
        self.pos += len(data)
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                self.emit("event", event)

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            self.poll()

    def stop(self) -> None:
        self.stopping.set()
        self.join()
        self.poll()


def write_inputs(spec: dict[str, Any], workdir: Path) -> dict[str, Path]:
    """The archives to test: paths given (local run) or bytes sent along (gateway)."""
    paths = {name: Path(p) for name, p in (spec.get("paths") or {}).items()}
    for name, data in (spec.get("files") or {}).items():
        path = workdir / "dist" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        paths[name] = path
    return paths


def run(spec: dict[str, Any], emit: Emit) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="devpi-test-"))
    try:
        return _run(spec, emit, workdir)
    finally:
        if not spec.get("keep"):
            shutil.rmtree(workdir, ignore_errors=True)


def _run(spec: dict[str, Any], emit: Emit, workdir: Path) -> dict[str, Any]:
    paths = write_inputs(spec, workdir)
    projdir = unpack(paths[spec["sdist"]], workdir / "src")
    # a config from outside the sdist: a local file used in place (tox's own dir kept out of it
    # with --workdir), or its text sent to a gateway, where the unpacked sdist is the project root
    placement: list[str] = []
    if spec.get("config_file"):
        confdir = workdir / "config"
        confdir.mkdir()
        config = confdir / spec["config_file"]["name"]
        config.write_text(spec["config_file"]["text"], encoding="utf-8")
        placement = ["--root", str(projdir)]
    elif spec.get("config_path"):
        config = Path(spec["config_path"])
        placement = ["--workdir", str(workdir / "tox")]
    else:
        config = find_config(projdir, spec.get("config"))
    plugindir = workdir / "plugin"
    plugindir.mkdir()
    (plugindir / f"{PLUGIN_MODULE}.py").write_text(spec["plugin_source"], encoding="utf-8")
    events = workdir / "events.jsonl"
    events.touch()
    result_json = workdir / "toxresult.json"
    env = dict(os.environ)
    env.update(spec.get("env") or {})
    env["DEVPI_TESTRUN_EVENTS"] = str(events)
    env["PYTEST_PLUGINS"] = ",".join(p for p in (env.get("PYTEST_PLUGINS"), PLUGIN_MODULE) if p)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(plugindir), env.get("PYTHONPATH")) if p)
    tox, pin = tox_command()
    toxargs = list(spec.get("toxargs") or [])
    names = env_names(tox, config, projdir, env, toxargs)
    cmd = [*tox, "--installpkg", str(paths[spec["installpkg"]]), "--recreate", "--result-json", str(result_json),
           "-c", str(config), *placement, *overrides(names, config, sys.executable if pin else None), *toxargs]
    emit("command", cmd)
    capture = bool(spec.get("capture"))
    tail = EventTail(events, emit)
    tail.start()
    try:
        proc = subprocess.Popen(cmd, cwd=projdir, env=env, stdout=subprocess.PIPE if capture else None,
                                stderr=subprocess.STDOUT if capture else None, text=capture,
                                errors="replace" if capture else None)
    except OSError as e:
        tail.stop()
        raise RunnerError(f"cannot run tox ({cmd[0]}): {e}") from None
    try:
        if capture:
            assert proc.stdout is not None
            for line in proc.stdout:
                emit("out", line.rstrip("\n"))
        exitcode = proc.wait()
    except BaseException:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise
    finally:
        tail.stop()
    report = None
    if result_json.exists():
        try:
            report = json.loads(result_json.read_text(encoding="utf-8"))
        except ValueError:
            report = None
    if isinstance(report, dict):  # tox writes getfqdn(), often "localhost": name the host as the run does
        host = describe()["host"]
        if report.get("host") != host:
            report["tox_host"], report["host"] = report.get("host"), host
    result = {"exitcode": exitcode, "toxresult": report, "finished": time.time()}
    emit("done", result)  # before the (slow) clean-up of tox's virtualenvs
    return result


if __name__ == "__channelexec__":  # on an execnet gateway: spec in, messages out
    channel = globals()["channel"]
    _spec = channel.receive()
    channel.send(("hello", describe()))
    try:
        run(_spec, lambda kind, data: channel.send((kind, data)))
    except RunnerError as _e:
        channel.send(("error", str(_e)))
    except Exception as _e:  # report anything, then let the gateway end
        channel.send(("error", f"{type(_e).__name__}: {_e}"))
