"""Hostile command lines and output paths: numbers that are not numbers, files that are not
where they seem (issue 28, items 6 and 7)."""

import subprocess
import sys

import pytest
import typer.main

from proxydiag.cli import app


def run(*args, stdin: bytes | None = None, timeout: float = 60):
    return subprocess.run([sys.executable, "-m", "proxydiag", *args], input=stdin, capture_output=True,
                          timeout=timeout)


def float_options() -> list[tuple[str, str]]:
    """Every (command, option) that takes a float, found in the app itself so that a new one is covered."""
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    return [(name, param.opts[0]) for name, command in commands.items() for param in command.params
            if param.type.name == "float"]


def test_float_options_are_found():
    assert ("sniff", "--duration") in float_options() and ("probe", "--timeout") in float_options()


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN", "-Infinity"])
def test_non_finite_numbers_refused(value):
    for command, option in float_options():
        result = run(command, option, value, timeout=20)
        stderr = result.stderr.decode()
        assert result.returncode == 2, (command, option, stderr)
        assert stderr.count("\n") == 1 and option in stderr and "finite" in stderr, (command, option, stderr)
        assert result.stdout == b""
