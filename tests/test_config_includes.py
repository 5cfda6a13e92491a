"""Includes read only what a configuration may include (issue 28, item 3): regular files,
a bounded count and size, loops detected; a refusal is one line on stderr and exit 2, and
the other inputs are still checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OTHER = ROOT / "tests" / "configs_real" / "haproxy-behind-lb.cfg"  # an input that must still be checked
SERVER = "    server { listen 25; proxy_pass 10.0.0.3:10025; proxy_protocol on; }\n"


def nginx_conf(directory: Path, inside_stream: str) -> Path:
    path = directory / "nginx.conf"
    path.write_text(f"stream {{\n    {inside_stream}\n{SERVER}}}\n")
    return path


def check(*paths: Path, stdin=subprocess.DEVNULL) -> tuple[int, str, dict]:
    result = subprocess.run([sys.executable, "-m", "proxydiag", "check", *map(str, paths), "-F", "json"],
                            stdin=stdin, capture_output=True, text=True, timeout=30)
    return result.returncode, result.stderr, json.loads(result.stdout) if result.stdout.strip() else {}


def assert_refused(code: int, stderr: str, document: dict, config: Path, words: str) -> None:
    assert code == 2 and stderr.count("\n") == 1, stderr
    assert stderr.startswith(f"proxydiag: {config}") and words in stderr, stderr
    assert "internal error" not in stderr
    assert [item["path"] for item in document["proxy_configs"]] == [str(OTHER)]  # the other input was checked


def test_include_of_a_fifo_is_refused_without_waiting(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    config = nginx_conf(tmp_path, f"include {fifo};")
    assert_refused(*check(config, OTHER), config, "not a regular file (a FIFO)")


def test_include_of_standard_input_is_refused_while_it_stays_open(tmp_path):
    config = nginx_conf(tmp_path, "include /dev/stdin;")
    reader, writer = os.pipe()  # held open: a read would wait for ever
    try:
        assert_refused(*check(config, OTHER, stdin=reader), config, "not a regular file")
    finally:
        os.close(reader)
        os.close(writer)


@pytest.mark.parametrize("target", ["/dev/zero", "/dev/null"])
def test_include_of_a_device_is_refused(tmp_path, target):
    config = nginx_conf(tmp_path, f"include {target};")
    assert_refused(*check(config, OTHER), config, "a device")


def test_include_loop_is_one_line(tmp_path):
    (tmp_path / "x.conf").write_text("include y.conf;\n")
    (tmp_path / "y.conf").write_text("include x.conf;\n")
    config = nginx_conf(tmp_path, "include x.conf;")
    code, stderr, document = check(config, OTHER)
    assert_refused(code, stderr, document, tmp_path / "y.conf", f"include loop: {tmp_path / 'x.conf'} includes itself")


def test_glob_naming_too_many_files_is_refused(tmp_path):
    many = tmp_path / "many"
    many.mkdir()
    for index in range(300):
        (many / f"{index:03d}.conf").write_text(f"# {index}\n")
    config = nginx_conf(tmp_path, f"map $server_port $b {{ include {many}/*.conf; }}")
    assert_refused(*check(config, OTHER), config, "more than 256 files")


def test_included_files_together_are_bounded_in_size(tmp_path):
    from proxydiag.configs.includes import IncludeGuard

    for name in ("a", "b"):
        (tmp_path / name).write_text("#" * 600 + "\n")
    guard = IncludeGuard(max_files=10, max_bytes=1000)
    guard.read(str(tmp_path / "a"))
    with pytest.raises(OSError, match="hold more than"):
        guard.read(str(tmp_path / "b"))


def test_ordinary_includes_still_read(tmp_path):
    (tmp_path / "servers.conf").write_text(SERVER)
    config = tmp_path / "nginx.conf"
    config.write_text("stream {\n    include servers.conf;\n}\n")
    code, stderr, document = check(config)
    assert code in (0, 1), stderr
    (read,) = document["proxy_configs"]
    assert read["listeners"] == ["*:25"] and read["routes"][0]["where"] == f"{tmp_path / 'servers.conf'}:1", read


@pytest.mark.parametrize("target", ["/proc/self/environ", "/proc/self/cmdline"])
def test_include_of_a_kernel_file_is_refused(tmp_path, target):
    """The process's environment is a regular file to stat(): an include must not make it
    map entries a report quotes."""
    config = nginx_conf(tmp_path, f"map $server_port $b {{ include {target}; }}")
    assert_refused(*check(config, OTHER), config, "a file of the kernel's")


def test_a_configuration_in_dev_shm_is_read(tmp_path, monkeypatch):
    """/dev/shm is a tmpfs of ordinary files, not the kernel's: nginx's file and its
    includes there are read (the fuzz targets keep their scratch files there). Whether or
    not this machine has a writable /dev/shm, the files are made to resolve there."""
    from proxydiag.configs import nginx

    shm = "/dev/shm/proxydiag-test"
    real_realpath = os.path.realpath

    def realpath(path, *args, **kwargs):
        resolved = real_realpath(path, *args, **kwargs)
        return shm + resolved[len(str(tmp_path)):] if resolved.startswith(str(tmp_path)) else resolved

    monkeypatch.setattr(os.path, "realpath", realpath)
    (tmp_path / "servers.conf").write_text(SERVER)
    config = nginx_conf(tmp_path, f"include {tmp_path / 'servers.conf'};")
    read = nginx.load(str(config))
    assert f"{tmp_path / 'servers.conf'}:1" in [str(route.origin) for route in read.routes], read.routes


def test_a_file_elsewhere_under_dev_is_still_the_kernels(tmp_path, monkeypatch):
    """The /dev/shm exception is that folder alone: /dev/shmx or /dev/fd are the kernel's."""
    from proxydiag.configs.includes import IncludeGuard

    (tmp_path / "x.conf").write_text("# x\n")
    for fake in ("/dev/shmx/x.conf", "/dev/fd/3"):
        monkeypatch.setattr(os.path, "realpath", lambda path, *args, fake=fake, **kwargs: fake)
        with pytest.raises(OSError, match="a file of the kernel's"):
            IncludeGuard().check(str(tmp_path / "x.conf"))


def test_include_of_a_file_of_another_syntax_says_so_and_quotes_nothing(tmp_path):
    """A map that includes /etc/passwd-like lines: refused in words, none of its text shown."""
    other = tmp_path / "passwd"
    other.write_text("root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\n")
    config = nginx_conf(tmp_path, f"map $server_port $b {{ include {other}; }}")
    code, stderr, document = check(config, OTHER)
    assert code == 2 and stderr.count("\n") == 1 and "not nginx's syntax" in stderr, stderr
    assert "root:x" not in stderr + json.dumps(document) and "alice" not in stderr + json.dumps(document)
