"""Every rule has its page, and the page and the rule agree: `explain`, `rules` and the
fixes in reports all read the pages."""

import subprocess
import sys

import pytest

from proxydiag.rules import catalog
from proxydiag.rules.registry import ALL_RULES

HEADINGS = ["What it means", "Why Stalwart cares", "How to confirm", "Fix on the proxy", "Fix on Stalwart", "See also"]


@pytest.mark.parametrize("rule", ALL_RULES, ids=lambda rule: rule.code)
def test_each_rule_has_a_page_that_agrees_with_it(rule):
    page = catalog.load_pages()[rule.code]
    assert (page.slug, page.severity) == (rule.slug, rule.severity)
    assert page.summary and len(page.summary) < 100
    assert list(page.sections) == HEADINGS
    assert list(page.proxy_fixes) == list(catalog.PROXY_SECTIONS)


def test_no_page_without_a_rule():
    assert set(catalog.load_pages()) == {rule.code for rule in ALL_RULES}


def test_explain_by_code_and_by_slug():
    by_code = subprocess.run([sys.executable, "-m", "proxydiag", "explain", "PD301"], capture_output=True, text=True)
    by_slug = subprocess.run([sys.executable, "-m", "proxydiag", "explain", "tls-flag-lost"], capture_output=True, text=True)
    assert by_code.returncode == 0 and by_code.stdout == by_slug.stdout
    assert "send-proxy-v2-ssl" in by_code.stdout


def test_rules_lists_the_catalog():
    result = subprocess.run([sys.executable, "-m", "proxydiag", "rules"], capture_output=True, text=True)
    lines = result.stdout.splitlines()
    assert len(lines) == len(ALL_RULES) and lines[0].startswith("PD101  error    missing-proxy-header")


def test_fix_names_the_recognised_proxy_first():
    page = catalog.load_pages()["PD301"]
    fix = page.fix_for("HAProxy")
    assert fix.startswith("HAProxy:\n") and "send-proxy-v2-ssl" in fix and "Stalwart:\n" in fix
