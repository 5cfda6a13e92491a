"""Regular expressions against hostile text: a configuration is a file anyone may hand us
(up to 16 MiB), and `decode` reads whatever is pasted, so no pattern may backtrack
catastrophically on them. The proxy_config fuzzer
hung on a HAProxy file of blank lines (`\\A(\\s*#…\\n|\\s*\\n)*global`: exponential), and a
probe found `(?m)^\\s*…` quadratic in every kind's detector (each line start rescans the
blank lines after it) and `\\s*(.+?)\\s*` cubic in the TOML line index."""

from __future__ import annotations

import ast
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxydiag.configs import DETECTORS, NOT_READ

REPO = Path(__file__).resolve().parent.parent
# Runs of what the vulnerable patterns backtracked over: blanks and line ends of every kind,
# and the punctuation configuration syntaxes open with.
UNITS = ["\n", "\r\n", " \n", "\t\n", " ", "\t", "[", "{", "#", "#\n", "a ", "a\n", "=\n", "- ", ": ", '"a":', ".", "a."]
SIZE = 256 * 1024  # linear code reads this in milliseconds; the quadratic detectors took hours


@contextlib.contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail instead of hanging: the old patterns would run for hours on these inputs."""
    def expired(signum, frame):
        raise TimeoutError(f"still matching after {seconds} s: the pattern backtracks")
    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_no_pattern_in_the_package_is_a_known_redos_shape():
    """regexploit's static analysis of every regex literal in proxydiag/ (it caught the
    exponential HAProxy one and the cubic TOML and dst_port ones)."""
    result = subprocess.run([sys.executable, "-c", "import sys; from regexploit.bin.regexploit_python_ast import main; "
                             "sys.argv = ['regexploit-py', 'proxydiag']; main()"],
                            capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "Processed" in result.stdout, result.stdout  # it did read the package
    assert "Vulnerable" not in result.stdout, result.stdout


@pytest.mark.parametrize("unit", UNITS, ids=[repr(unit) for unit in UNITS])
def test_kind_detection_is_linear_on_runs_of_one_shape(unit):
    """What regexploit does not model: a multi-line search whose `^\\s*` rescans the blank
    lines after each line start. Every detector and not-read pattern, on 256 KiB of one shape,
    alone and around a line that almost matches."""
    text = unit * (SIZE // len(unit))
    nearly = ["global", "frontend", "apiVersion:", "[server.", "entryPoints", "tcp:\n  routers:", "layer4",
              "static_resources", "services:\n  - traefik.", "[a]\naccept"]
    with deadline(60):
        for name, looks_like in DETECTORS:
            for probe in (text, text + nearly[0] + "x", text + "".join(nearly) + "{"):
                looks_like(probe)
        for _, pattern in NOT_READ:
            pattern.search(text + "x")


def _check(tmp_path: Path, files: dict[str, str], *extra: str) -> tuple[int, str]:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-m", "proxydiag", "check", *extra, *(str(tmp_path / name) for name in files)],
                            capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
    if result.returncode == 2:
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.returncode, result.stderr


def test_a_split_haproxy_configuration_opening_with_blank_lines_is_read(tmp_path):
    """The fuzzer's hang: a file of a split configuration (`haproxy -f global.cfg -f
    mail.cfg`) that opens with blank lines before its `global` section."""
    whole = (REPO / "tests/configs_real/stalwart-docs-haproxy.cfg").read_text()
    start = whole.index("\ndefaults")
    global_section = whole[whole.index("\nglobal") + 1:start]
    code, err = _check(tmp_path, {"global.cfg": "\n" * 200_000 + global_section, "mail.cfg": whole[start + 1:]})
    assert code in (0, 1), err


def test_toml_lines_of_blanks_inside_a_string_are_read(tmp_path):
    """The TOML line index matches every line, even inside a multi-line string: a line of
    blanks opening a table, or before no `=`, was cubic."""
    body = "[" + " " * 100_000 + "\n" + " " * 100_000 + "x\n"
    text = f'[entryPoints.smtp]\naddress = ":25"\n[tcp.routers.r]\nrule = """\n{body}"""\n'
    code, err = _check(tmp_path, {"traefik.toml": text}, "--kind", "traefik")
    assert code in (0, 1, 2), err


@pytest.mark.parametrize("name", ["config.toml", "traefik.toml"])
def test_a_dotted_key_as_deep_as_it_is_long_is_refused_in_one_line(name, tmp_path):
    """`a.a.a…a = 1` is valid TOML nested 5,000 deep: Stalwart's reader flattened it and
    the Traefik reader walked it recursively, both to an internal RecursionError."""
    text = "a." * 5000 + "a = 1\n"
    if name == "config.toml":
        haproxy = (REPO / "tests/configs_real/stalwart-docs-haproxy.cfg").read_text()
        (tmp_path / name).write_text(text)
        code, err = _check(tmp_path, {"haproxy.cfg": haproxy}, "--stalwart-config", str(tmp_path / name))
    else:
        code, err = _check(tmp_path, {name: "[entryPoints]\n" + text}, "--kind", "traefik")
    assert code == 2 and "nested too deeply" in err, err


@pytest.mark.parametrize("shape", ["offset-rows", "blank-run"])
def test_decode_reads_the_largest_text_it_accepts_in_linear_time(shape):
    """`decode -` takes up to 6 x 65,551 characters of text (the largest header as a hexdump).
    A lone row was re-read from its start at each gap of blanks, and hexdump -C's column
    pattern rescanned a run of blanks from each blank: minutes on the largest paste."""
    from proxydiag.parsers.userinput import TEXT_READ_LIMIT

    text = {"offset-rows": "0000   " * (TEXT_READ_LIMIT // 7),
            "blank-run": "0d0a" + " " * (TEXT_READ_LIMIT - 6) + "0a"}[shape]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-m", "proxydiag", "decode", "-"], input=text, capture_output=True,
                            text=True, cwd=REPO, env=env, timeout=120)
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
    assert result.returncode in (0, 1, 2), result.stderr
    if result.returncode == 2:
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


# The argument that holds a call's flags, by `re` function (re.sub's second is the replacement).
FLAG_ARGUMENT = {"compile": 1, "search": 2, "match": 2, "fullmatch": 2, "findall": 2, "finditer": 2, "split": 3,
                 "sub": 4, "subn": 4}
# Runs that the patterns' classes overlap on: blanks, line ends, words, digits, punctuation.
RUNS = [" ", "\t", "\n", " \n", "\r\n", "a", "0", "a ", "0 ", ".", ":", "[", "{", "#", "-", "a.", "0.", '"', "=", ",",
        ";", "/", "0:", "a-", "x=", "\\"]


def regex_literals() -> list[tuple[str, re.Pattern, str]]:
    """Every pattern written literally in a call of `re` in proxydiag/, with its flags and
    how the code applies it: `match` or `fullmatch` when that is all it is used for (one
    start), else `search` (every start)."""
    found = []
    for path in sorted((REPO / "proxydiag").rglob("*.py")):
        tree = ast.parse(path.read_text())
        uses: dict[str, set[str]] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                uses.setdefault(node.value.id, set()).add(node.attr)
        names = {id(assign.value): assign.targets[0].id for assign in ast.walk(tree)
                 if isinstance(assign, ast.Assign) and len(assign.targets) == 1 and isinstance(assign.targets[0], ast.Name)}
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "re"
                    and node.func.attr in FLAG_ARGUMENT and node.args
                    and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, (str, bytes))):
                continue
            index = FLAG_ARGUMENT[node.func.attr]
            flag_node = node.args[index] if len(node.args) > index else \
                next((keyword.value for keyword in node.keywords if keyword.arg == "flags"), None)
            flags = eval(compile(ast.Expression(flag_node), "flags", "eval"), {"re": re}) if flag_node else 0
            method = node.func.attr
            if method == "compile":
                used = uses.get(names.get(id(node), ""), set())
                method = used.pop() if len(used) == 1 and used <= {"match", "fullmatch"} else "search"
            elif method not in ("match", "fullmatch"):
                method = "search"
            found.append((f"{path.relative_to(REPO)}:{node.lineno}", re.compile(node.args[0].value, flags), method))
    return found


def test_every_pattern_in_the_package_runs_in_linear_time():
    """Beyond regexploit's shapes: each literal pattern applied as the code applies it to
    24,000 repeats of each run and a byte none expects. Linear patterns take milliseconds;
    those that rescan a run from each of its positions took seconds at this size (hours on a
    16 MiB file)."""
    patterns = regex_literals()
    assert len(patterns) > 100  # the walk did find the package's patterns
    slow = []
    for where, pattern, method in patterns:
        for run in RUNS:
            text: str | bytes = run * 24_000 + "\x00"
            if isinstance(pattern.pattern, bytes):
                text = text.encode()
            started = time.perf_counter()
            getattr(pattern, method)(text)
            if time.perf_counter() - started > 1.5:
                slow.append(f"{where} {pattern.pattern!r}.{method} on {run!r}")
    assert not slow, "patterns that backtrack over a run:\n" + "\n".join(slow)
