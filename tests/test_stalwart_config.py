"""proxydiag/stalwart_config.py: the 0.15 TOML and 0.16 JSON styles, sets as lists and
maps, dotted keys, trust entries as Stalwart parses them, effective trust per listener,
and errors that are always one-line `ConfigError`s."""

from __future__ import annotations

import ipaddress
import json
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxydiag.configs.stalwart import (
    ConfigError,
    Listener,
    StalwartConfig,
    load,
    parse_bind,
    parse_trusted_entry,
)


def write_toml(tmp_path: Path, text: str, name: str = "config.toml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


def write_json(tmp_path: Path, document, name: str = "registry.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")
    return str(path)


def by_id(config: StalwartConfig) -> dict[str, Listener]:
    return {listener.id: listener for listener in config.listeners}


def texts(entries) -> list[str]:
    return [entry.text for entry in entries]


# --- TOML, up to 0.15 ----------------------------------------------------------------------

TOML_015 = """\
    [server]
    hostname = "mail.example.test"

    [server.proxy]
    trusted-networks = ["10.0.0.0/8", "192.168.1.10"]

    [server.listener.smtp]
    bind = ["[::]:25"]
    protocol = "smtp"

    [server.listener.submissions]
    bind = ["[::]:465", "0.0.0.0:10465"]
    protocol = "smtp"
    tls.implicit = true

    [server.listener.imap]
    bind = "127.0.0.1:10143"
    protocol = "imap"
    proxy.override = true
    proxy.trusted-networks = ["172.16.0.0/12"]

    [server.listener.http]
    bind = ["0.0.0.0:8080"]
    protocol = "HTTPS"

    [http]
    use-x-forwarded = true
    """


def test_toml_015_global_trust_listeners_and_use_x_forwarded(tmp_path):
    config = load(write_toml(tmp_path, TOML_015))
    assert config.style == "toml"
    assert texts(config.trusted) == ["10.0.0.0/8", "192.168.1.10"]
    assert [entry.where for entry in config.trusted] == ["server.proxy.trusted-networks.0", "server.proxy.trusted-networks.1"]
    assert config.use_x_forwarded is True
    listeners = by_id(config)
    assert set(listeners) == {"smtp", "submissions", "imap", "http"}
    assert listeners["smtp"].binds == [("::", 25)] and listeners["smtp"].protocol == "smtp"
    assert listeners["submissions"].binds == [("::", 465), ("0.0.0.0", 10465)]
    assert listeners["submissions"].implicit_tls is True and listeners["smtp"].implicit_tls is False
    assert listeners["http"].binds == [("0.0.0.0", 8080)]


def test_toml_015_per_listener_trusted_networks_and_override_toggle(tmp_path):
    listeners = by_id(load(write_toml(tmp_path, TOML_015)))
    assert texts(listeners["imap"].trusted_override) == ["172.16.0.0/12"]
    assert listeners["imap"].override_toggle is True
    assert listeners["smtp"].trusted_override is None  # the global list applies
    assert listeners["smtp"].override_toggle is False


def test_toml_015_map_form_trusts_nothing_and_binds_nothing(tmp_path):
    """0.15 reads the *values* of a list: a map gives `true`, which is no network, so the
    entries are flagged (PD601) and never honoured."""
    config = load(write_toml(tmp_path, """\
        [server.proxy.trusted-networks]
        "10.0.0.0/8" = true
        "2001:db8::/32" = true

        [server.listener.smtp]
        bind = { "[::]:25" = true }
        protocol = "smtp"
        """))
    assert [entry.network for entry in config.trusted] == [None, None]
    assert all("written as a map" in entry.problem for entry in config.trusted)
    assert sorted(texts(config.trusted)) == ["10.0.0.0/8 = true", "2001:db8::/32 = true"]
    assert not config.trusts(by_id(config)["smtp"], "10.1.2.3")
    assert by_id(config)["smtp"].binds == []
    assert any("not a full socket address" in problem for problem in config.problems)


def test_toml_015_listener_exists_only_where_protocol_is_set(tmp_path):
    config = load(write_toml(tmp_path, """\
        [server.listener.smtp]
        bind = ["[::]:25"]
        protocol = "SMTP"

        [server.listener.half]
        bind = ["[::]:2525"]
        tls.implicit = true

        [server.listener.sieve]
        bind = ["[::]:4190"]
        protocol = "ManageSieve"

        [server.listener.web]
        bind = ["[::]:443"]
        protocol = "https"
        tls.implicit = true

        [server.listener.bogus]
        bind = ["[::]:9999"]
        protocol = "imaps"
        """))
    listeners = by_id(config)
    assert {name: listener.protocol for name, listener in listeners.items()} == {
        "smtp": "smtp", "sieve": "managesieve", "web": "http"}
    assert config.listener_for_port(2525) is None
    assert any("imaps" in problem for problem in config.problems)


def test_toml_015_bind_must_be_a_full_socket_address(tmp_path):
    config = load(write_toml(tmp_path, """\
        [server.listener.http]
        bind = ["8080", "[::]:8081", "::1:8082", "mail.example.test:8083"]
        protocol = "http"
        """))
    assert by_id(config)["http"].binds == [("::", 8081)]
    assert len([problem for problem in config.problems if "full socket address" in problem]) == 3


def test_toml_dotted_keys_in_stalwart_key_space(tmp_path):
    config = load(write_toml(tmp_path, """\
        "server.proxy.trusted-networks.0000" = "10.0.0.0/8"
        "server.proxy.trusted-networks.0001" = "::ffff:10.9.9.9"
        "server.listener.smtp.bind.0000" = "[::]:25"
        "server.listener.smtp.bind.0001" = "0.0.0.0:10025"
        "server.listener.smtp.protocol" = "smtp"
        "server.listener.imaps.bind.0000" = "[::]:993"
        "server.listener.imaps.protocol" = "imap"
        "server.listener.imaps.tls.implicit" = true
        "server.listener.imaps.proxy.trusted-networks.0000" = "192.168.1.0/24"
        "http.use-x-forwarded" = false
        """))
    assert texts(config.trusted) == ["10.0.0.0/8", "::ffff:10.9.9.9"]
    listeners = by_id(config)
    assert listeners["smtp"].binds == [("::", 25), ("0.0.0.0", 10025)]
    assert listeners["imaps"].implicit_tls is True
    assert texts(listeners["imaps"].trusted_override) == ["192.168.1.0/24"]
    assert config.use_x_forwarded is False


def test_toml_server_http_use_x_forwarded_of_011(tmp_path):
    config = load(write_toml(tmp_path, "[server.http]\nuse-x-forwarded = true\n"))
    assert config.use_x_forwarded is True


def test_toml_without_use_x_forwarded_leaves_it_unknown(tmp_path):
    assert load(write_toml(tmp_path, TOML_015.replace("use-x-forwarded = true", ""))).use_x_forwarded is None


def test_toml_starting_with_a_table_header_is_not_taken_for_json(tmp_path):
    config = load(write_toml(tmp_path, '[server.proxy]\ntrusted-networks = ["10.0.0.0/8"]\n'))
    assert config.style == "toml" and texts(config.trusted) == ["10.0.0.0/8"]


def test_toml_empty_file_is_an_empty_configuration(tmp_path):
    config = load(write_toml(tmp_path, ""))
    assert (config.style, config.trusted, config.listeners, config.use_x_forwarded) == ("toml", [], [], None)


# --- JSON registry objects, 0.16 -------------------------------------------------------------

JSON_016 = [
    {"@type": "SystemSettings", "proxyTrustedNetworks": {"10.0.0.0/8": True, "192.168.0.0/16": False}},
    {"@type": "NetworkListener", "name": "smtp", "bind": {"[::]:25": True}, "protocol": "smtp",
     "overrideProxyTrustedNetworks": {}},
    {"@type": "NetworkListener", "name": "submissions", "bind": {"[::]:465": True}, "protocol": "smtp", "tlsImplicit": True},
    {"@type": "NetworkListener", "name": "imap", "bind": {"[::]:143": True}, "protocol": "imap",
     "overrideProxyTrustedNetworks": {"172.16.0.0/12": True}},
    {"@type": "NetworkListener", "name": "sieve", "bind": {"[::]:4190": True}, "protocol": "manageSieve"},
    {"@type": "Http", "useXForwarded": True},
]


def test_json_016_objects_with_sets_as_maps(tmp_path):
    config = load(write_json(tmp_path, JSON_016))
    assert config.style == "json"
    assert texts(config.trusted) == ["10.0.0.0/8"]
    assert config.use_x_forwarded is True
    listeners = by_id(config)
    assert listeners["smtp"].binds == [("::", 25)]
    assert listeners["submissions"].binds == [("::", 465)] and listeners["submissions"].implicit_tls is True
    assert listeners["imap"].binds == [("::", 143)]
    assert listeners["sieve"].protocol == "managesieve"
    assert config.problems == []


def test_json_016_arrays_are_flagged_as_refused_and_never_honoured(tmp_path):
    config = load(write_json(tmp_path, [
        {"@type": "SystemSettings", "proxyTrustedNetworks": ["10.0.0.0/8"]},
        {"@type": "NetworkListener", "name": "imap", "bind": {"[::]:143": True}, "protocol": "imap",
         "overrideProxyTrustedNetworks": ["172.16.0.0/12"]},
        {"@type": "NetworkListener", "name": "smtp", "bind": ["[::]:25"], "protocol": "smtp"},
    ]))
    assert [entry.network for entry in config.all_entries()] == [None, None]
    assert all("Stalwart 0.16 refuses it" in entry.problem and '{"10.0.0.0/8": true}' in config.trusted[0].problem
               for entry in config.all_entries())
    # Stalwart's 0.16 docs write sets as arrays, which registry/src/types/map.rs refuses: say so
    assert all("documentation writes sets as arrays" in entry.problem for entry in config.all_entries())
    assert not config.trusts(by_id(config)["imap"], "172.16.0.5")
    assert "smtp" not in by_id(config) and any("bind" in problem for problem in config.problems)


@pytest.mark.parametrize("protocol", ["managesieve", "ManageSieve", "https", "SMTP"])
def test_json_016_protocol_names_are_exact(tmp_path, protocol):
    config = load(write_json(tmp_path, [{"@type": "NetworkListener", "name": "x", "bind": {"[::]:1": True}, "protocol": protocol}]))
    assert config.listeners == [] and protocol in config.problems[0]


@pytest.mark.parametrize("text", ["0.0.0.0/8", "0.0.0.0/32", "0.0.0.0"])
def test_json_016_refuses_any_ipv4_entry_at_0_0_0_0(tmp_path, text):
    config = load(write_json(tmp_path, {"@type": "SystemSettings", "proxyTrustedNetworks": {text: True}}))
    assert config.trusted[0].network is None and "0.0.0.0" in config.trusted[0].problem


def test_toml_015_keeps_0_0_0_0_slash_8_as_the_network_it_names():
    assert parse_trusted_entry("0.0.0.0/8", "x").problem is None
    assert parse_trusted_entry("0.0.0.0/8", "x", style="json").problem


def test_json_016_override_empty_present_or_missing(tmp_path):
    listeners = by_id(load(write_json(tmp_path, JSON_016)))
    assert listeners["smtp"].trusted_override == []  # present but empty: PD602
    assert texts(listeners["imap"].trusted_override) == ["172.16.0.0/12"]
    assert listeners["submissions"].trusted_override is None  # absent: the global list


def test_json_jmap_method_responses(tmp_path):
    config = load(write_json(tmp_path, {"methodResponses": [
        ["x:SystemSettings/get", {"accountId": "a", "list": [{"id": "singleton", "proxyTrustedNetworks": {"10.0.0.0/8": True}}]}, "0"],
        ["x:NetworkListener/get", {"accountId": "a", "list": [
            {"id": "b1", "name": "smtp", "bind": {"[::]:25": True}, "protocol": "smtp"},
            {"id": "b2", "name": "imaps", "bind": {"[::]:993": True}, "protocol": "imap", "tlsImplicit": True,
             "overrideProxyTrustedNetworks": {"192.168.1.10": True}},
        ]}, "1"],
        ["x:Http/get", {"list": [{"useXForwarded": False}]}, "2"],
    ]}))
    assert texts(config.trusted) == ["10.0.0.0/8"]
    assert config.use_x_forwarded is False
    listeners = by_id(config)
    assert listeners["smtp"].binds == [("::", 25)]
    assert listeners["imaps"].implicit_tls is True
    assert texts(listeners["imaps"].trusted_override) == ["192.168.1.10"]


def test_json_single_method_response(tmp_path):
    config = load(write_json(tmp_path, {"methodResponses": [
        ["x:NetworkListener/get", {"list": [{"name": "smtp", "bind": {"[::]:25": True}, "protocol": "smtp"}]}, "0"],
    ]}))
    assert [listener.id for listener in config.listeners] == ["smtp"]


def test_json_listener_without_type_or_name(tmp_path):
    config = load(write_json(tmp_path, {"listeners": [{"bind": {"0.0.0.0:25": True}, "protocol": "smtp"}]}))
    assert [(listener.id, listener.binds) for listener in config.listeners] == [("listener-1", [("0.0.0.0", 25)])]


def test_json_without_any_known_object_is_a_config_error(tmp_path):
    path = write_json(tmp_path, {"directory": {"type": "internal"}})
    with pytest.raises(ConfigError, match="no SystemSettings, NetworkListener or Http object found"):
        load(path)


# --- binds -------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "bind"), [
    ("[::]:25", ("::", 25)),
    ("0.0.0.0:465", ("0.0.0.0", 465)),
    ("127.0.0.1:10025", ("127.0.0.1", 10025)),
    ("[2001:db8::25]:587", ("2001:db8::25", 587)),
    ("8080", None),  # Stalwart wants a full socket address
    ("::1:25", None),
    ("[10.0.0.1]:25", None),
    ("mail.example.test:25", None),
    (" [::]:993 ", ("::", 993)),
    ("nonsense", None),
    ("[::]:", None),
    (":25", None),
    ("", None),
])
def test_parse_bind(text, bind):
    assert parse_bind(text) == bind


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.ip_addresses(), st.just("::"), st.just("0.0.0.0")), st.integers(0, 65535))
def test_parse_bind_reads_back_every_full_socket_address(address, port):
    host = f"[{address}]" if ":" in str(address) else str(address)
    assert parse_bind(f"{host}:{port}") == (str(ipaddress.ip_address(str(address))), port)
    assert parse_bind(str(port)) is None  # a bare port is no socket address for Stalwart


@given(st.text(max_size=60))
def test_parse_bind_never_raises(text):
    bind = parse_bind(text)
    assert bind is None or 0 <= bind[1] <= 65535


def test_parse_bind_with_a_superscript_digit_is_no_bind():
    assert parse_bind("²") is None


# --- trust entries ------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["0.0.0.0/0", "::/0", "10.0.0.0/7", "2001:db8::/7", "0.0.0.0", "::", "", "   ",
                                  "10.0.0.0/33", "2001:db8::/129", "10.0.0.0/abc", "10.0.0.0/-8",
                                  "mail.example.test", "10.0.0.0/8/8", "300.1.2.3"])
def test_entries_stalwart_rejects_match_nothing_and_say_why(text):
    entry = parse_trusted_entry(text, "server.proxy.trusted-networks.0")
    assert entry.network is None and entry.problem
    assert "\n" not in entry.problem
    assert not entry.matches("10.0.0.1") and not entry.matches("2001:db8::1")


# Stalwart's own parser (IpAddrMask::parse_value: rsplit_once('/'), then IpAddr and u32 parses
# of the trimmed parts, masks 8..=32 / 8..=128) is the reference for what an entry means.


@pytest.mark.parametrize("text", ["10.0.0.0/", "fe80::1%eth0"])
def test_entries_stalwart_refuses_are_problems_for_the_reader_too(text):
    entry = parse_trusted_entry(text, "x")
    assert entry.network is None and entry.problem


def test_spaces_around_the_slash_are_trimmed_as_stalwart_does():
    entry = parse_trusted_entry("10.0.0.0 / 8", "x")
    assert entry.problem is None and entry.matches("10.1.2.3")


def test_ipv4_mapped_ipv6_entry_matches_an_ipv4_peer():
    assert parse_trusted_entry("::ffff:10.0.0.0/104", "x").matches("10.1.2.3")


def test_mask_under_slash_8_says_it_trusts_no_one():
    assert "trusts no one" in parse_trusted_entry("0.0.0.0/0", "x").problem


def test_bare_unspecified_address_says_it_trusts_nothing():
    assert "without a mask" in parse_trusted_entry("0.0.0.0", "x").problem


@pytest.mark.parametrize(("text", "inside", "outside"), [
    ("10.0.0.0/8", "10.255.1.2", "11.0.0.1"),
    ("10.1.2.3/8", "10.9.9.9", "11.0.0.1"),  # host bits set: the network it names
    ("192.168.1.10", "192.168.1.10", "192.168.1.11"),  # bare address: /32
    ("2001:db8::/32", "2001:db8:1::25", "2001:db9::1"),
    ("::1", "::1", "::2"),
])
def test_valid_entries_match_their_network(text, inside, outside):
    entry = parse_trusted_entry(text, "x")
    assert entry.problem is None
    assert entry.matches(inside) and not entry.matches(outside)


def test_ipv4_entry_matches_an_ipv4_mapped_peer():
    assert parse_trusted_entry("10.0.0.0/8", "x").matches("::ffff:10.1.2.3")
    assert parse_trusted_entry("10.1.2.3", "x").matches("::ffff:10.1.2.3")
    assert not parse_trusted_entry("10.0.0.0/8", "x").matches("::ffff:11.1.2.3")


def test_ipv6_entry_does_not_match_ipv4_and_garbage_matches_nothing():
    entry = parse_trusted_entry("2001:db8::/32", "x")
    assert not entry.matches("10.0.0.1")
    assert not entry.matches("not an address")


def test_entry_keeps_its_text_and_where():
    entry = parse_trusted_entry(" 10.0.0.0/8 ", "server.proxy.trusted-networks.3")
    assert (entry.text, entry.where) == (" 10.0.0.0/8 ", "server.proxy.trusted-networks.3")


def test_entry_with_a_superscript_mask_is_a_problem_not_a_crash():
    assert parse_trusted_entry("10.0.0.0/²", "x").problem


def test_problem_entries_from_a_file_are_kept_for_pd601(tmp_path):
    config = load(write_toml(tmp_path, """\
        [server.proxy]
        trusted-networks = ["0.0.0.0/0", "10.0.0.0/8", ""]

        [server.listener.smtp]
        bind = ["[::]:25"]
        protocol = "smtp"
        proxy.trusted-networks = ["::/0"]
        """))
    problems = [(entry.text, entry.where) for entry in config.all_entries() if entry.problem]
    assert problems == [
        ("0.0.0.0/0", "server.proxy.trusted-networks.0"),
        ("", "server.proxy.trusted-networks.2"),
        ("::/0", "server.listener.smtp.proxy.trusted-networks.0"),
    ]


# --- effective trust ------------------------------------------------------------------------


def test_effective_trust_global_list_when_no_override(tmp_path):
    config = load(write_toml(tmp_path, TOML_015))
    smtp = by_id(config)["smtp"]
    assert config.effective_trust(smtp) == config.trusted
    assert config.trusts(smtp, "10.0.0.5") and not config.trusts(smtp, "172.16.0.5")


def test_effective_trust_non_empty_override_replaces_the_global_list(tmp_path):
    config = load(write_toml(tmp_path, TOML_015))
    imap = by_id(config)["imap"]
    assert texts(config.effective_trust(imap)) == ["172.16.0.0/12"]
    assert config.trusts(imap, "172.16.0.5") and not config.trusts(imap, "10.0.0.5")


def test_effective_trust_empty_override_falls_back_to_the_global_list(tmp_path):
    config = load(write_json(tmp_path, JSON_016))
    smtp = by_id(config)["smtp"]
    assert smtp.trusted_override == []
    assert config.effective_trust(smtp) == config.trusted
    assert config.trusts(smtp, "10.0.0.5")


def test_trust_through_a_dual_stack_socket(tmp_path):
    config = load(write_json(tmp_path, JSON_016))
    assert config.trusts(by_id(config)["submissions"], "::ffff:10.0.0.5")


def test_listener_for_port(tmp_path):
    config = load(write_toml(tmp_path, TOML_015))
    assert config.listener_for_port(10465).id == "submissions"
    assert config.listener_for_port(8080).id == "http"
    assert config.listener_for_port(587) is None


def test_to_dict_shows_binds_and_lists_as_written(tmp_path):
    document = load(write_toml(tmp_path, TOML_015)).to_dict()
    assert document["style"] == "toml" and document["trusted_networks"] == ["10.0.0.0/8", "192.168.1.10"]
    imap = next(item for item in document["listeners"] if item["id"] == "imap")
    assert imap == {"id": "imap", "protocol": "imap", "bind": ["127.0.0.1:10143"], "implicit_tls": False,
                    "trusted_networks": ["172.16.0.0/12"]}
    smtp = next(item for item in document["listeners"] if item["id"] == "smtp")
    assert smtp["bind"] == ["[::]:25"] and smtp["trusted_networks"] is None


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "this is neither TOML nor JSON\n",
    "{not json at all",
    "[server.proxy\ntrusted-networks = 1\n",
    "key = \n",
    '"just a JSON string"',
])
def test_neither_toml_nor_json_is_a_one_line_config_error(tmp_path, text):
    path = tmp_path / "config.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load(str(path))
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(str(path)) and "neither a TOML config.toml nor Stalwart JSON objects" in message


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load(str(tmp_path / "absent.toml"))


def test_non_utf8_file_is_a_config_error(tmp_path):
    path = tmp_path / "config.toml"
    path.write_bytes(b"\xff\xfe[server]\n")
    with pytest.raises(ConfigError) as caught:
        load(str(path))
    assert "\n" not in str(caught.value)


def test_deeply_nested_json_is_a_config_error(tmp_path):
    path = tmp_path / "registry.json"
    path.write_text("[" * 5000 + "]" * 5000, encoding="utf-8")
    with pytest.raises(ConfigError):
        load(str(path))


def test_deeply_nested_toml_is_a_config_error(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("a = " + "[" * 100000 + "]" * 100000, encoding="utf-8")
    with pytest.raises(ConfigError):
        load(str(path))


# --- properties ---------------------------------------------------------------------------


def load_text(directory: Path, text: str):
    path = directory / "config"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        return load(str(path))
    except ConfigError as error:
        assert "\n" not in str(error)
        return None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(max_size=400))
def test_arbitrary_text_raises_nothing_but_config_error(tmp_path_factory, text):
    load_text(tmp_path_factory.mktemp("fuzz", numbered=True), text)


# Documents in Stalwart's key space with arbitrary values. ASCII only: non-ASCII digits
# ('²') are pinned by the explicit tests above.
ASCII = st.text(st.characters(codec="ascii", exclude_categories=("Cc", "Cs")), max_size=20)
SCALARS = st.one_of(ASCII, st.integers(-(2**31), 2**31), st.booleans(), st.none())
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=4), st.dictionaries(ASCII, st.booleans(), max_size=4))
TOML_KEYS = st.sampled_from([
    "server.proxy.trusted-networks", "server.listener.smtp.bind", "server.listener.smtp.protocol",
    "server.listener.smtp.tls.implicit", "server.listener.smtp.proxy.trusted-networks",
    "server.listener.smtp.proxy.override", "http.use-x-forwarded", "server.listener.x.bind.0000",
])
JSON_KEYS = st.sampled_from([
    "@type", "name", "bind", "protocol", "tlsImplicit", "useImplicitTls", "overrideProxyTrustedNetworks",
    "proxyTrustedNetworks", "useXForwarded", "id",
])


def toml_value(value) -> str:
    if value is None:
        return '""'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value if item is not None) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(key)} = {toml_value(item)}" for key, item in value.items()) + "}"
    return json.dumps(value)  # strings, integers and booleans are spelt the same in both


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(TOML_KEYS, VALUES, max_size=6))
def test_stalwart_toml_keys_with_arbitrary_values_raise_nothing_but_config_error(tmp_path_factory, document):
    text = "\n".join(f'"{key}" = {toml_value(value)}' for key, value in document.items())
    load_text(tmp_path_factory.mktemp("toml", numbered=True), text)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.dictionaries(JSON_KEYS, VALUES, max_size=6), max_size=4))
def test_stalwart_json_objects_with_arbitrary_values_raise_nothing_but_config_error(tmp_path_factory, objects):
    load_text(tmp_path_factory.mktemp("json", numbered=True), json.dumps(objects))
