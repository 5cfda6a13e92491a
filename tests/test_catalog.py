"""Every rule has its page, and the page and the rule agree: `explain`, `rules` and the
fixes in reports all read the pages."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from proxydiag.rules import catalog
from proxydiag.rules.base import SEVERITIES
from proxydiag.rules.registry import ALL_RULES

HEADINGS = ["What it means", "Why Stalwart cares", "How to confirm", "Fix on the proxy", "Fix on Stalwart", "See also"]


@pytest.mark.parametrize("code", sorted(catalog.load_pages()))
def test_each_page_has_the_catalog_s_headings(code):
    page = catalog.load_pages()[code]
    assert page.slug and page.severity in SEVERITIES
    assert page.summary and len(page.summary) < 100
    assert list(page.sections) == HEADINGS
    assert list(page.proxy_fixes)[:len(catalog.PROXY_SECTIONS)] == list(catalog.PROXY_SECTIONS)
    fixes = page.sections["Fix on the proxy"]
    assert set(re.findall(r"^### (.+)$", fixes, re.M)) == set(page.proxy_fixes), "a proxy section no report can print"


def test_no_page_without_a_rule():
    """A page's code is a connection rule's (the registry) or raised by the judges of the
    other evidence in rules/ (configurations against each other, traffic against them)."""
    assert set(catalog.load_pages()) <= {rule.code for rule in ALL_RULES} | _raised_in_rules()


def test_explain_by_code_and_by_slug():
    by_code = subprocess.run([sys.executable, "-m", "proxydiag", "explain", "PD301"], capture_output=True, text=True)
    by_slug = subprocess.run([sys.executable, "-m", "proxydiag", "explain", "tls-flag-lost"], capture_output=True, text=True)
    assert by_code.returncode == 0 and by_code.stdout == by_slug.stdout
    assert "send-proxy-v2-ssl" in by_code.stdout


def test_rules_lists_the_catalog():
    result = subprocess.run([sys.executable, "-m", "proxydiag", "rules"], capture_output=True, text=True)
    lines = result.stdout.splitlines()
    assert len(lines) == len(catalog.load_pages()) and lines[0].startswith("PD101  error    missing-proxy-header")


def test_fix_names_the_recognised_proxy_first():
    page = catalog.load_pages()["PD301"]
    fix = page.fix_for("HAProxy")
    assert fix.startswith("HAProxy:\n") and "send-proxy-v2-ssl" in fix and "Stalwart:\n" in fix


def test_fix_for_the_proxy_version_the_bytes_show():
    """A v2 header from nginx is nginx 1.31.4 or later: its fix for that version comes first;
    a bare `nginx` (version unknown) keeps the fix every version takes."""
    page = catalog.load_pages()["PD104"]
    assert "proxy_protocol v2;" in page.fix_for("nginx 1.31.4+")
    pd301 = catalog.load_pages()["PD301"]
    newer, unknown = pd301.fix_for("nginx 1.31.4+"), pd301.fix_for("nginx")
    assert "proxy_protocol v2;" in newer and "ssl" in newer
    assert "proxy_protocol v2;" not in unknown and "proxy_protocol on;" in unknown
    assert pd301.fix_for("nginx 1.30+") == unknown  # older than the page's >=1.31.4 block


def test_nginx_v2_headers_are_recognised_by_their_tlv_order():
    """nginx 1.31.4 writes its TLVs, then CRC32C last; HAProxy puts CRC32C first."""
    from types import SimpleNamespace

    from proxydiag.parsers.proxy_protocol import build_ssl_value, build_v2, parse
    from proxydiag.rules.registry import recognise_proxy

    ssl = (0x20, build_ssl_value(version="TLSv1.3"))
    nginx = parse(build_v2(src_addr="203.0.113.7", dst_addr="192.0.2.10", src_port=4000, dst_port=993,
                           tlvs=[(0x02, b"mail.example.com"), ssl], with_crc32c=True)).header
    assert nginx is not None and nginx.tlvs[-1].type == 0x03
    assert recognise_proxy(SimpleNamespace(header=nginx)) == "nginx 1.31.4+"
    without_crc = parse(build_v2(src_addr="203.0.113.7", dst_addr="192.0.2.10", src_port=4000, dst_port=993,
                                 tlvs=[ssl])).header
    assert recognise_proxy(SimpleNamespace(header=without_crc)) == "HAProxy"


CODE = re.compile(r"\bPD\d{3}\b")
PACKAGE = Path(catalog.__file__).resolve().parents[1]
RULES_LAYER = (PACKAGE / "rules", PACKAGE / "findings")


def _package_files() -> list[Path]:
    return [path for path in sorted(PACKAGE.rglob("*")) if path.is_file() and "__pycache__" not in path.parts
            and path.suffix in (".py", ".json", ".html", ".j2", ".css", ".md", ".txt")]


def test_finding_codes_are_written_only_where_rules_are_defined():
    """Outside rules/ and the pages, a code is named only through the catalog (a Finding's
    code, `catalog.find_page`): so every code has one implementation, where rules are."""
    written = {f"{path.relative_to(PACKAGE)}:{number}": CODE.findall(line)
               for path in _package_files() if not path.is_relative_to(RULES_LAYER[0]) and not path.is_relative_to(RULES_LAYER[1])
               for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if CODE.search(line)}
    assert written == {}


def _raised_in_rules() -> set[str]:
    return {code for path in (PACKAGE / "rules").glob("*.py") for code in CODE.findall(path.read_text(encoding="utf-8"))}


def test_every_code_the_rules_raise_has_a_page():
    raised = _raised_in_rules()
    assert raised <= set(catalog.load_pages())
    assert {rule.code for rule in ALL_RULES} <= raised
