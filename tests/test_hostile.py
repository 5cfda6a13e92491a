"""The hostile corpus (tests/hostile/manifest.json): every file through `analyze` or
`decode` in every format (rich on a terminal, JSON, Markdown; with and without
--anonymize), checked for the exit code and the properties its entry names."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from tests.hostile.generated import GENERATED
from tests.html_inert import html_problems, mermaid_problems

REPO = Path(__file__).resolve().parent.parent
HOSTILE = REPO / "tests" / "hostile"
MANIFEST = json.loads((HOSTILE / "manifest.json").read_text())
SGR = re.compile(r"\x1b\[[0-9;]*m")
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def run(args: list[str], terminal: bool = False, columns: int = 100) -> tuple[int, str, str]:
    """`proxydiag` to a pipe, or to a pseudo-terminal (rich forced into terminal mode)."""
    env = dict(os.environ, COLUMNS=str(columns), PYTHONPATH=str(REPO), TERM="xterm-256color")
    command = [sys.executable, "-m", "proxydiag", *args]
    if not terminal:
        result = subprocess.run(command, capture_output=True, env=env, cwd=REPO, timeout=300)
        return result.returncode, result.stdout.decode("utf-8", "replace"), result.stderr.decode("utf-8", "replace")
    leader, follower = pty.openpty()
    process = subprocess.Popen(command, stdout=follower, stderr=subprocess.PIPE, env=env, cwd=REPO)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    stderr = process.stderr.read().decode("utf-8", "replace")
    code = process.wait(timeout=300)
    os.close(leader)
    return code, b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n"), stderr


def hostile_path(entry: dict, scratch: Path) -> Path:
    """The entry's file: from tests/hostile/files/, or written now when generated."""
    if not entry.get("generated"):
        return HOSTILE / "files" / entry["file"]
    path = scratch / entry["file"]
    path.write_bytes(GENERATED[entry["file"]]())
    return path


def variants(entry: dict, path: Path) -> list[tuple[str, list[str], bool]]:
    if entry["command"] == "decode":
        return [("rich", ["decode", "-", "--format", "rich"], False), ("json", ["decode", "-", "--format", "json"], False)]
    found = []
    for anonymize in (False, True):
        extra = ["--anonymize"] if anonymize else []
        found += [("rich", ["analyze", str(path), *extra], anonymize),
                  ("json", ["analyze", str(path), "-F", "json", *extra], anonymize),
                  ("markdown", ["analyze", str(path), "-F", "markdown", *extra], anonymize),
                  ("html", ["analyze", str(path), "-F", "html", "-v", *extra], anonymize)]
    return found


@pytest.mark.parametrize("entry", MANIFEST, ids=[entry["file"] for entry in MANIFEST])
def test_hostile_file(entry, tmp_path):
    path = hostile_path(entry, tmp_path)
    for fmt, args, anonymized in variants(entry, path):
        if entry["command"] == "decode":
            env = dict(os.environ, PYTHONPATH=str(REPO))
            data = path.read_bytes()
            result = subprocess.run([sys.executable, "-m", "proxydiag", *args], input=data, capture_output=True, env=env,
                                    cwd=REPO, timeout=120)
            code, out, err = result.returncode, result.stdout.decode(), result.stderr.decode()
        else:
            code, out, err = run(args, terminal=fmt == "rich")
        where = f"{entry['file']} {fmt}{' --anonymize' if anonymized else ''}"
        assert code in entry["exit"], f"{where}: exit {code}; {err}"
        assert "Traceback" not in err and "internal error" not in err, f"{where}: {err}"
        check_properties(entry, fmt, out, err, anonymized, where)


def check_properties(entry: dict, fmt: str, out: str, err: str, anonymized: bool, where: str) -> None:
    props = entry["properties"]
    if "one_line_error" in props:
        assert len(err.strip().splitlines()) <= 2, f"{where}: {err}"
    if "no_raw_control" in props:
        for stream in (SGR.sub("", out), err):
            control = RAW_CONTROL.search(stream)
            near = stream[max(0, control.start() - 30) : control.end() + 30] if control else ""
            assert control is None, f"{where}: raw {control.group()!r} near {near!r}"
    if fmt == "json" and out.strip():
        json.loads(out)
    if "markdown_inert" in props and fmt == "markdown":
        tokens = MarkdownIt("commonmark").enable("table").enable("linkify" if False else "table").parse(out)
        kinds = {child.type for token in tokens for child in (token.children or [])} | {token.type for token in tokens}
        assert not kinds & {"image", "html_inline", "html_block", "link_open"}, f"{where}: {kinds}"
        assert sum(1 for token in tokens if token.type == "heading_open" and token.tag == "h1") == 1
    if "markdown_inert" in props and fmt == "markdown":  # the Mermaid ladders too
        assert not mermaid_problems(out), f"{where}: {mermaid_problems(out)}"
    if "markdown_inert" in props and fmt == "html":
        assert not html_problems(out), f"{where}: {html_problems(out)}"
    if "no_secret" in props and entry.get("secret"):
        for value in (entry["secret"], entry["secret"].encode().hex()):
            assert value not in out, f"{where}: the secret is shown"
    if "anonymized" in props and anonymized:
        for address in entry.get("originals", []):
            assert not re.search(r"(?<![\w.:])" + re.escape(address) + r"(?![\w:]|\.\d)", out), f"{where}: {address} shown"
    if not anonymized:
        for text in entry.get("shows", []):
            assert text in out, f"{where}: {text!r} not shown"
    for rule in entry.get("rules", []):
        assert rule in out, f"{where}: violation {rule} not named"


@pytest.mark.parametrize("case", ["check-device", "nginx-include-device", "stalwart-config-device", "log-device",
                                  "config-beside-capture"])
def test_a_file_that_never_ends_is_refused_in_one_line(case, tmp_path):
    """/dev/zero given as a configuration, included by one, or read as a log: a bounded
    read, one line on stderr naming it, exit 2, never a read until memory runs out."""
    nginx = tmp_path / "nginx.conf"
    nginx.write_text("events {}\nstream {\n    include /dev/zero;\n}\n")
    args = {
        "check-device": ["check", "/dev/zero"],
        "nginx-include-device": ["check", str(nginx)],
        "stalwart-config-device": ["analyze", "captures/haproxy-v2-smtp.pcap", "--stalwart-config", "/dev/zero"],
        "log-device": ["logs", "/dev/zero"],
        "config-beside-capture": ["analyze", "captures/haproxy-v2-smtp.pcap", str(nginx)],
    }[case]
    code, _, err = run(args)
    assert code == 2 and "Traceback" not in err, err
    lines = err.strip().splitlines()
    refusal = "not a regular file" if str(nginx) in args else "larger than"  # an include names only files
    assert len(lines) == 1 and "/dev/zero" in lines[0] and refusal in lines[0], err
