"""What ``devpi upload`` builds, from the options and the checkout's own defaults.

devpi-client reads defaults for its build options from ``[tool.devpi.upload]``
in pyproject.toml (booleans ``sdist``, ``wheel``, ``no-vcs``, ``setupdir-only``)
or ``[devpi:upload]`` in setup.cfg (the same keys as strings, plus ``formats``),
never both. Projects carry these sections, so we read them the same way: an
option given on the command line adds to them, as devpi-client's do. The
deprecated ``formats`` list (``--formats sdist.tgz,bdist_wheel``) is mapped to
``--sdist``/``--wheel``; formats that ``python -m build`` cannot make
(bdist_egg, sdist.zip, ...) are refused instead of falling back to the
``setup.py`` commands devpi-client ran.
"""
from __future__ import annotations

import argparse
import configparser
import tomllib
from dataclasses import dataclass
from pathlib import Path

from devpi.client.hub import Hub

KEYS = ("sdist", "wheel", "no-vcs", "setupdir-only")
TRUE = ("y", "yes", "t", "true", "on", "1")
FALSE = ("n", "no", "f", "false", "off", "0", "")
# the sdist formats python -m build makes (a .tar.gz); devpi-client accepted these names for it
DEFAULT_SDIST = ("sdist", "sdist.tgz", "sdist.gztar", "sdist.tar.gz")


@dataclass
class BuildChoice:
    """Which archives to build; both False means python -m build's default (sdist and wheel)."""

    sdist: bool = False
    wheel: bool = False

    @property
    def what(self) -> str:
        if self.sdist and not self.wheel:
            return "sdist"
        if self.wheel and not self.sdist:
            return "wheel"
        return "sdist and wheel"


def read_checkout_config(hub: Hub, checkout: Path) -> dict[str, object]:
    """The devpi upload defaults of the checkout (keys of ``KEYS`` plus ``formats``), each said once."""
    found: dict[str, dict[str, object]] = {}
    pyproject = checkout / "pyproject.toml"
    if pyproject.is_file():
        try:
            with open(pyproject, "rb") as f:
                data = tomllib.load(f)
        except (OSError, ValueError) as e:
            hub.fatal(f"cannot read {pyproject}: {' '.join(str(e).split())}")
        section = data.get("tool", {}).get("devpi", {}).get("upload")
        if isinstance(section, dict):
            found["pyproject.toml [tool.devpi.upload]"] = _from_toml(hub, section)
    setup_cfg = checkout / "setup.cfg"
    if setup_cfg.is_file():
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        try:
            parser.read(setup_cfg, encoding="utf-8")
        except (configparser.Error, ValueError) as e:
            hub.fatal(f"cannot read {setup_cfg}: {' '.join(str(e).split())}")
        if parser.has_section("devpi:upload"):
            found["setup.cfg [devpi:upload]"] = _from_ini(hub, dict(parser.items("devpi:upload")))
    if len(found) > 1:
        hub.fatal("devpi upload settings in both pyproject.toml [tool.devpi.upload] and setup.cfg "
                  "[devpi:upload]: keep one")
    for where, values in found.items():
        shown = ", ".join(f"{k}={v}" for k, v in values.items()) or "nothing"
        hub.info(f"using {where}: {shown}")
        return values
    return {}


def _from_toml(hub: Hub, section: dict[str, object]) -> dict[str, object]:
    if "formats" in section:
        hub.fatal("pyproject.toml [tool.devpi.upload]: 'formats' is not supported there (as in devpi-client); "
                  "use sdist = true or wheel = true")
    out: dict[str, object] = {}
    for key, value in section.items():
        if key not in KEYS:
            hub.fatal(f"pyproject.toml [tool.devpi.upload]: unknown key {key!r} (known: {', '.join(KEYS)})")
        if not isinstance(value, bool):
            hub.fatal(f"pyproject.toml [tool.devpi.upload]: {key} = {value!r} is not a boolean: use true or false")
        out[key] = value
    return out


def _from_ini(hub: Hub, section: dict[str, str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in section.items():
        if key == "formats":
            out[key] = value
            continue
        if key not in KEYS:
            hub.fatal(f"setup.cfg [devpi:upload]: unknown key {key!r} (known: formats, {', '.join(KEYS)})")
        low = value.strip().lower()
        if low not in TRUE + FALSE:
            hub.fatal(f"setup.cfg [devpi:upload]: {key} = {value!r} is not a boolean: use 1/yes/true or 0/no/false")
        out[key] = low in TRUE
    return out


def build_choice(hub: Hub, args: argparse.Namespace, config: dict[str, object]) -> BuildChoice:
    """--sdist/--wheel (or the checkout's), else the deprecated formats list mapped onto them."""
    choice = BuildChoice(sdist=bool(args.sdist or config.get("sdist")),
                         wheel=bool(args.wheel or config.get("wheel")))
    formats = args.formats if args.formats is not None else config.get("formats")
    if not formats or choice.sdist or choice.wheel:
        return choice
    wanted = [f.strip() for f in str(formats).split(",") if f.strip()]
    unknown = [f for f in wanted if f not in DEFAULT_SDIST and f != "bdist_wheel"]
    if unknown:
        hub.fatal(f"format(s) {', '.join(unknown)} cannot be built: 'python -m build' makes only an sdist "
                  "(.tar.gz) and a wheel (--sdist, --wheel)")
    choice = BuildChoice(sdist=any(f in DEFAULT_SDIST for f in wanted), wheel="bdist_wheel" in wanted)
    modern = {"sdist": "--sdist", "wheel": "--wheel"}.get(choice.what, "no option (sdist and wheel is the default)")
    hub.warn(f"formats {','.join(wanted)} is deprecated (as in devpi-client): use {modern}")
    return choice
