"""The layering of the house (pyproject.toml's import-linter contracts) holds.

The store never reaches up into HTTP, the mirror or test runs; the client never
imports the server or the web UI; the server never imports the web UI except
where it loads it as an optional part. ``lint-imports`` reads the contracts.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = str(Path(sys.executable).with_name("lint-imports"))


def _lint(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LINT_IMPORTS, "--no-cache", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_contracts_hold() -> None:
    result = _lint()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout, result.stdout


def test_a_broken_contract_is_reported(tmp_path: Path) -> None:
    """The linter sees our imports: a contract the code breaks (the core uses the store) fails."""
    config = tmp_path / "broken.toml"
    config.write_text(
        '[tool.importlinter]\nroot_packages = ["devpi.server"]\n\n'
        '[[tool.importlinter.contracts]]\nname = "core without store"\ntype = "forbidden"\n'
        'source_modules = ["devpi.server.core"]\nforbidden_modules = ["devpi.server.store"]\n')
    result = _lint("--config", str(config))
    assert result.returncode != 0, result.stdout
    assert "devpi.server.core -> devpi.server.store" in result.stdout, result.stdout
