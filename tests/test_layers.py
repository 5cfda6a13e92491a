"""The package's shape holds: the stages are layered and acyclic (import-linter's contracts
in pyproject.toml), few modules stand loose at the top, none grows past 500 lines, and
every lab has a loopback network of its own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.daemons import LAB_NETWORKS

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "proxydiag"
# Modules past the bound that wait for their split (issue 27); none may join them.
TOO_LONG_FOR_NOW: set[str] = set()
THIN_CLI_LINES = 400  # options, help, one call, render, exit code (issue 27 item 5)


def test_import_linter_contracts_hold():
    run = subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
                          "sys.exit(lint_imports_command())", "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Contracts: 2 kept, 0 broken." in run.stdout, run.stdout


def test_at_most_a_dozen_modules_stand_loose_at_the_top():
    loose = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert len(loose) <= 12, loose


def test_no_module_grows_past_500_lines():
    long = {path.name: sum(1 for _ in path.open()) for path in PACKAGE.rglob("*.py")}
    assert {name for name, lines in long.items() if lines > 500} <= TOO_LONG_FOR_NOW, long


def test_the_command_line_stays_thin():
    lines = sum(1 for _ in (PACKAGE / "cli.py").open())
    assert lines <= THIN_CLI_LINES, lines


def test_labs_own_their_networks():
    assert len(set(LAB_NETWORKS.values())) == len(LAB_NETWORKS), LAB_NETWORKS
