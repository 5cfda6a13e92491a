"""The HAProxy release a configuration or a header shows, and the fix for it (issue 29 item 9).

`proxy-v2-options` exists from HAProxy 1.9 (commit f643b8042 "MINOR: introduce proxy-v2-options
for send-proxy-v2", first in v1.9-dev1: 1.8's src/server.c has no such keyword), its
`unique-id` from 2.2, `set-proxy-v2-tlv-fmt` from 2.9 (each tag's doc/configuration.txt and
src/server.c). Where nothing shows the release, the fix printed first is the one every release
takes (`send-proxy-v2-ssl`, 1.5+)."""

from __future__ import annotations

import re
import pytest

from proxydiag.configs import haproxy
from proxydiag.parsers.proxy_protocol import build_ssl_value, build_v2, parse
from proxydiag.rules import catalog
from proxydiag.rules.registry import recognise_proxy
from tests.test_configs import PROXY, SERVER, STALWART, haproxy_accepts, haproxy_cfg, pem, stalwart, write  # noqa: F401 (pem: a fixture)
from tests.test_recognise_proxies import leg
from tests.test_snippets import of

TLS_FRONT = f"""
    listen imaps
        bind {PROXY}:993 ssl crt PEM
        source {PROXY}
        server s1 {SERVER}:10143 send-proxy
    {{other}}
    """
NEWER = f"""listen smtp
        bind {PROXY}:25
        source {PROXY}
        server s1 {SERVER}:10025 send-proxy-v2 proxy-v2-options crc32c
"""


def header(*tlvs: tuple[int, bytes]) -> bytes:
    return build_v2(src_addr="203.0.113.7", dst_addr="192.0.2.10", src_port=4000, dst_port=993, tlvs=list(tlvs))


@pytest.mark.parametrize(("tlvs", "release"), [
    ([(0x20, build_ssl_value(version="TLSv1.3"))], "HAProxy"),  # send-proxy-v2-ssl alone: 1.5+
    ([(0x20, build_ssl_value(version="TLSv1.3", cipher="TLS_AES_256_GCM_SHA384"))], "HAProxy 1.9+"),  # ssl-cipher
    ([(0x03, b"\0\0\0\0"), (0x20, build_ssl_value(version="TLSv1.3"))], "HAProxy 1.9+"),  # crc32c
    ([(0x05, b"4f1c2a"), (0x20, build_ssl_value(version="TLSv1.3"))], "HAProxy 2.2+"),  # unique-id
])
def test_the_header_shows_the_haproxy_release(tlvs, release):
    assert recognise_proxy(leg(1, header(*tlvs))) == release


def test_pages_print_the_every_release_fix_unless_the_release_is_shown():
    pd301 = catalog.load_pages()["PD301"]
    assert "proxy-v2-options" not in pd301.fix_for("HAProxy") and "send-proxy-v2-ssl check" in pd301.fix_for("HAProxy")
    assert "proxy-v2-options ssl-cipher" in pd301.fix_for("HAProxy 1.9+")
    assert "proxy-v2-options ssl-cipher" in pd301.fix_for("HAProxy 2.2+")


def test_the_configuration_s_keywords_set_its_floor():
    floor = haproxy.parse(haproxy_cfg(TLS_FRONT.format(other=NEWER))).version_floor
    assert floor is not None and floor.version == "1.9" and "proxy-v2-options crc32c" in floor.origin.text
    assert haproxy.parse(haproxy_cfg(TLS_FRONT.format(other=""))).version_floor is None
    newest = haproxy.parse(haproxy_cfg(TLS_FRONT.format(other=NEWER.replace(
        "proxy-v2-options crc32c", "set-proxy-v2-tlv-fmt(0xE1) %[fc_pp_tlv(0xE1)]")))).version_floor
    assert newest is not None and newest.version == "2.9"


@pytest.mark.lab
@pytest.mark.parametrize(("other", "cipher"), [(NEWER, True), ("", False)])
def test_the_tls_fix_against_the_user_s_lines_fits_the_release_shown(tmp_path, pem, other, cipher):
    from proxydiag.configs import fixes
    from proxydiag.pipeline.check import check_configurations

    path = write(tmp_path, "haproxy.cfg", haproxy_cfg(TLS_FRONT.format(other=other)).replace("PEM", str(pem)))
    haproxy_accepts(path)
    result = check_configurations([str(path)], stalwart(tmp_path, STALWART))
    edits = [edit for judgement in result.judgements if judgement.code == "PD302" for edit in judgement.edits]
    assert edits, [judgement.code for judgement in result.judgements]
    fixed = write(tmp_path, "fixed.cfg", fixes.apply(path.read_text(), edits, str(path)))
    line = next(line for line in fixed.read_text().splitlines() if "server s1" in line and ":10143" in line)
    assert "send-proxy-v2-ssl" in line and ("proxy-v2-options ssl-cipher" in line) == cipher
    haproxy_accepts(fixed)


@pytest.mark.parametrize("snippet", of("haproxy"), ids=lambda snippet: snippet.id)
def test_a_haproxy_snippet_declares_the_release_its_keywords_need(snippet):
    """What a report prints where the release is unknown works on every release; a block for
    a newer one says so (```haproxy >=1.9) and uses what that release brought."""
    needed = {since for keyword, since in haproxy.KEYWORDS_SINCE.items()
              if re.search(rf"(?<![\w-]){re.escape(keyword)}(?![\w-])", snippet.text)}
    declared = snippet.minimum_version()
    if declared is None:
        assert not needed, f"{snippet.id}: needs HAProxy {sorted(needed)}: declare it (```haproxy >=VERSION)"
    else:
        assert declared in needed, f"{snippet.id}: declares >={declared} but uses none of its keywords"
