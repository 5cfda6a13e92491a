"""The service table: one answer to "what is this port" for recognisers, rules, flow
orientation and the live capture filter."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxydiag.pipeline.analysis import Settings
from proxydiag.services import DEFAULT_TABLE, SHIFTED_PORT_OFFSET, STANDARD_SERVICES, parse_ports


@pytest.mark.parametrize("port", sorted(STANDARD_SERVICES))
def test_stalwarts_10000_layout_means_the_same_service(port):
    public, shifted = DEFAULT_TABLE.lookup(port), DEFAULT_TABLE.lookup(port + SHIFTED_PORT_OFFSET)
    assert public is not None and shifted is not None
    assert (shifted.name, shifted.protocol, shifted.implicit_tls) == (public.name, public.protocol, public.implicit_tls)
    assert shifted.shifted and not public.shifted


def test_implicit_tls_ports_and_families():
    assert {port for port, service in STANDARD_SERVICES.items() if service.implicit_tls} == {465, 993, 995, 443}
    assert DEFAULT_TABLE.lookup(993).family == DEFAULT_TABLE.lookup(143).family == "imap"
    assert DEFAULT_TABLE.lookup(10465).family == DEFAULT_TABLE.lookup(587).family == "submission"
    assert DEFAULT_TABLE.lookup(5432) is None and 5432 not in DEFAULT_TABLE


def test_the_capture_filter_names_every_port_of_the_table():
    table = DEFAULT_TABLE.with_ports(parse_ports("2626=smtp"))
    words = table.bpf_filter().replace("(", " ").replace(")", " ").split()
    assert {int(word) for word in words if word.isdigit()} == set(table.ports())
    assert {25, 10025, 14190, 2626} <= set(table.ports())


def test_ports_option_names_a_service_or_leaves_it_to_the_bytes():
    services = parse_ports("2626=smtp, 8443=HTTPS,7000")
    assert (services[2626].protocol, services[2626].public_port) == ("smtp", 2626)
    assert services[8443].implicit_tls and services[8443].protocol == "http"
    assert services[7000].protocol is None
    settings = Settings.from_options(ports="2626=smtp")
    assert settings.options.services.protocol(2626) == "smtp"


@pytest.mark.parametrize("spec", ["x", "0", "70000", "25=carrier-pigeon", "25=smtp,,abc"])
def test_a_bad_ports_option_says_why(spec):
    with pytest.raises(ValueError, match="--ports"):
        parse_ports(spec)


@given(st.text(max_size=40))
def test_parse_ports_takes_anything_and_raises_only_its_own_error(spec):
    try:
        services = parse_ports(spec)
    except ValueError as error:
        assert str(error).startswith("--ports")
    else:
        assert all(0 < port < 65536 for port in services)
