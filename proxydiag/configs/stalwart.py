"""Stalwart's configuration as far as the PROXY protocol is concerned.

Two styles: the TOML `config.toml` of versions up to 0.15 (`server.proxy.trusted-networks`,
`server.listener.<id>.*`, `http.use-x-forwarded`), and the JSON registry objects of 0.16
(`SystemSettings.proxyTrustedNetworks`, `NetworkListener`, `Http.useXForwarded`), as
exported from the web admin or returned by the JMAP management API.

Each style is read the way its Stalwart reads it: 0.15 reads the *values* of a list (a map
`{ "10.0.0.0/8" = true }` gives the value `true`, which trusts nothing), creates a listener
only where `protocol` is set (any case; `https` means http) and wants full socket addresses in
`bind`; 0.16 sets are JSON maps of value -> true, and an array is refused
("Invalid value for object property", registry/src/types/map.rs).
"""

from __future__ import annotations

import ipaddress
import json
import tomllib
from dataclasses import dataclass, field

from proxydiag.jsontypes import JsonDict
from proxydiag.parsers.userinput import read_text_bounded

MIN_PREFIX = 8  # Stalwart rejects masks under /8 (registry/src/types/ipmask.rs)
PROTOCOLS_015 = {"smtp": "smtp", "lmtp": "lmtp", "imap": "imap", "pop3": "pop3", "managesieve": "managesieve",
                 "http": "http", "https": "http"}  # v0.15.5 config/server/listener.rs, case-insensitive
PROTOCOLS_016 = {"smtp": "smtp", "lmtp": "lmtp", "imap": "imap", "pop3": "pop3", "manageSieve": "managesieve",
                 "http": "http"}  # registry/src/schema/enums_impl.rs, exact spelling


class ConfigError(ValueError):
    """The file is not a Stalwart configuration proxydiag can read."""


@dataclass(frozen=True)
class TrustedEntry:
    """One trusted-networks entry as written, and what Stalwart makes of it."""

    text: str
    where: str
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None
    problem: str | None = None

    def matches(self, address: str) -> bool:
        if self.network is None:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if ip.version == 6 and ip.ipv4_mapped and self.network.version == 4:
            ip = ip.ipv4_mapped  # an IPv4 entry also matches ::ffff:a.b.c.d on a [::] socket
        elif ip.version == 4 and self.network.version == 6:
            ip = ipaddress.IPv6Address(f"::ffff:{ip}")  # and a ::ffff: entry matches IPv4 peers
        return ip.version == self.network.version and ip in self.network


def parse_trusted_entry(text: str, where: str, style: str = "toml") -> TrustedEntry:
    """One entry as Stalwart parses it; `style` "json" adds 0.16's refusal of any IPv4 entry
    whose address is 0.0.0.0, whatever the mask."""
    raw = text.strip()
    if not raw:
        return TrustedEntry(text, where, None, "an empty entry matches nothing")
    address, slash, mask = (part.strip() for part in raw.partition("/"))  # Stalwart trims each side
    try:
        ip = ipaddress.ip_address(address) if "%" not in address else None
    except ValueError:
        ip = None
    if ip is None:
        return TrustedEntry(text, where, None, f"{raw!r} is not an IP address or CIDR mask")
    if style == "json" and ip.version == 4 and ip.is_unspecified:
        return TrustedEntry(text, where, None, f"{raw}: 0.16 refuses any IPv4 entry whose address is 0.0.0.0, whatever the mask")
    if not slash:
        if ip.is_unspecified:
            return TrustedEntry(text, where, None, f"{raw} without a mask trusts nothing (0.15) or is refused (0.16)")
        return TrustedEntry(text, where, ipaddress.ip_network(ip))
    if not (mask.isascii() and mask.isdigit()) or int(mask) > ip.max_prefixlen:
        return TrustedEntry(text, where, None, f"{raw!r} has an invalid mask")
    if int(mask) < MIN_PREFIX:
        return TrustedEntry(
            text, where, None,
            f"{raw}: masks shorter than /8 are rejected (0.15 skips the entry, 0.16 refuses it), so it trusts no one",
        )
    return TrustedEntry(text, where, ipaddress.ip_network(f"{address}/{mask}", strict=False))


@dataclass
class Listener:
    id: str
    protocol: str | None
    binds: list[tuple[str, int]]
    implicit_tls: bool = False
    trusted_override: list[TrustedEntry] | None = None  # None: the server-wide list applies
    override_toggle: bool = False  # 0.15 `proxy.override`, which the server never reads

    @property
    def ports(self) -> set[int]:
        return {port for _, port in self.binds}


@dataclass
class StalwartConfig:
    path: str
    style: str  # "toml" (up to 0.15) or "json" (0.16 registry objects)
    trusted: list[TrustedEntry] = field(default_factory=list)
    listeners: list[Listener] = field(default_factory=list)
    use_x_forwarded: bool | None = None
    problems: list[str] = field(default_factory=list)  # what Stalwart refuses outside trust entries

    def listener_for_port(self, port: int) -> Listener | None:
        return next((listener for listener in self.listeners if port in listener.ports), None)

    def effective_trust(self, listener: Listener) -> list[TrustedEntry]:
        """Stalwart uses a listener's own list when it is non-empty, else the global one."""
        if listener.trusted_override:
            return listener.trusted_override
        return self.trusted

    def trusts(self, listener: Listener, address: str) -> bool:
        return any(entry.matches(address) for entry in self.effective_trust(listener))

    def all_entries(self) -> list[TrustedEntry]:
        entries = list(self.trusted)
        for listener in self.listeners:
            entries.extend(listener.trusted_override or [])
        return entries

    def to_dict(self) -> JsonDict:
        return {
            "path": self.path,
            "style": self.style,
            "trusted_networks": [entry.text for entry in self.trusted],
            "use_x_forwarded": self.use_x_forwarded,
            "problems": list(self.problems),
            "listeners": [
                {
                    "id": listener.id,
                    "protocol": listener.protocol,
                    "bind": [f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}" for addr, port in listener.binds],
                    "implicit_tls": listener.implicit_tls,
                    "trusted_networks": None
                    if listener.trusted_override is None
                    else [entry.text for entry in listener.trusted_override],
                }
                for listener in self.listeners
            ],
        }


def load(path: str) -> StalwartConfig:
    try:
        text = read_text_bounded(path, errors="strict")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read the Stalwart configuration ({getattr(error, 'strerror', None) or error})") from None
    try:
        return _parse(text, path)
    except RecursionError:  # `a.a.a…a = 1` is valid TOML, and as deep as it is long
        raise ConfigError(f"{path}: nested too deeply to be a Stalwart configuration") from None


def _parse(text: str, path: str) -> StalwartConfig:
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")) and _looks_like_json(stripped):
        return from_json(json.loads(stripped), path)
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: neither a TOML config.toml nor Stalwart JSON objects ({error})") from None
    return from_toml(document, path)


def _looks_like_json(text: str) -> bool:
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


# --- TOML, up to 0.15 ------------------------------------------------------------------


def _flatten(value, prefix: str = "") -> dict[str, object]:
    """{"a": {"b": [1, 2]}} -> {"a.b.0": 1, "a.b.1": 2}: Stalwart's own key space, which
    also covers files written with dotted keys ("server.listener.smtp.bind.0000")."""
    flat: dict[str, object] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}{key}."))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            flat.update(_flatten(item, f"{prefix}{index}."))
    else:
        flat[prefix[:-1]] = value
    return flat


def _values_under(flat: dict[str, object], key: str) -> list[tuple[str, object]]:
    """The values stored at `key` or under `key.<anything>`, with their full keys."""
    return [(name, value) for name, value in flat.items() if name == key or name.startswith(key + ".")]


def _set_values(flat: dict[str, object], key: str) -> list[tuple[str, object]] | None:
    """A 0.15 list: `key = [..]`, `key = ".."` or `key.N = ..`, as (full key, value). A map
    `key = {"10.0.0.0/8" = true}` comes out as its values, `true`: what 0.15 reads."""
    found = _values_under(flat, key)
    return found or None


MAP_FORM_015 = "written as a map: Stalwart 0.15 reads the values of this list (here `{value}`), which trust nothing; write a list"


def _toml_trusted(flat: dict[str, object], key: str) -> list[TrustedEntry] | None:
    found = _set_values(flat, key)
    if found is None:
        return None
    return [
        TrustedEntry(f"{name[len(key) + 1:]} = {str(value).lower()}", name, None, MAP_FORM_015.format(value=str(value).lower()))
        if isinstance(value, bool)
        else parse_trusted_entry(str(value), name)
        for name, value in found
    ]


def from_toml(document: JsonDict, path: str) -> StalwartConfig:
    flat = _flatten(document)
    config = StalwartConfig(path=path, style="toml")
    config.trusted.extend(_toml_trusted(flat, "server.proxy.trusted-networks") or [])
    for key in ("http.use-x-forwarded", "server.http.use-x-forwarded"):
        value = flat.get(key)
        if isinstance(value, bool):
            config.use_x_forwarded = value
    for listener_id in _toml_listener_ids(flat):
        base = f"server.listener.{listener_id}"
        protocol = PROTOCOLS_015.get(str(flat[f"{base}.protocol"]).lower())
        if protocol is None:
            config.problems.append(f"{base}.protocol = {flat[f'{base}.protocol']!r} is no protocol Stalwart 0.15 knows: no listener")
            continue
        binds = _binds(config, f"{base}.bind", [(name, value) for name, value in _set_values(flat, f"{base}.bind") or []])
        config.listeners.append(
            Listener(
                id=listener_id,
                protocol=protocol,
                binds=binds,
                implicit_tls=flat.get(f"{base}.tls.implicit") is True,
                trusted_override=_toml_trusted(flat, f"{base}.proxy.trusted-networks"),
                override_toggle=f"{base}.proxy.override" in flat,
            )
        )
    return config


def _toml_listener_ids(flat: dict[str, object]) -> list[str]:
    """0.15 creates a listener only where `server.listener.<id>.protocol` is set."""
    return sorted({name.split(".")[2] for name in flat if name.count(".") == 3 and name.startswith("server.listener.")
                   and name.endswith(".protocol")})


def _binds(config: StalwartConfig, where: str, values: list[tuple[str, object]]) -> list[tuple[str, int]]:
    binds = []
    for name, value in values:
        bind = parse_bind(str(value))
        if bind is None:
            config.problems.append(f"{name} = {value!r} is not a full socket address (such as [::]:25): Stalwart binds nothing for it")
        else:
            binds.append(bind)
    return binds


def _str(value) -> str | None:
    return str(value) if value is not None else None


def parse_bind(text: str) -> tuple[str, int] | None:
    """A full socket address, as Stalwart requires: '[::]:25', '0.0.0.0:465', '[2001:db8::1]:587'."""
    text = str(text).strip()
    host, _, port = text.rpartition(":")
    if not (port.isascii() and port.isdigit()) or int(port) > 65535:
        return None
    bracketed = host.startswith("[") and host.endswith("]")
    try:
        address = ipaddress.ip_address(host[1:-1] if bracketed else host)
    except ValueError:
        return None
    if (address.version == 6) != bracketed:
        return None
    return str(address), int(port)


# --- JSON registry objects, 0.16 -------------------------------------------------------


def from_json(document, path: str) -> StalwartConfig:
    config = StalwartConfig(path=path, style="json")
    recognised = False
    for kind, obj, where in _objects(document, "$"):
        recognised = recognised or kind in ("SystemSettings", "Http", "NetworkListener") or any(
            key in obj for key in ("proxyTrustedNetworks", "useXForwarded")
        ) or ("bind" in obj and "protocol" in obj)  # a listener, even one Stalwart refuses
        if kind == "SystemSettings" or "proxyTrustedNetworks" in obj:
            config.trusted.extend(_json_trusted(obj.get("proxyTrustedNetworks"), f"{where}.proxyTrustedNetworks"))
        if (kind == "Http" or "useXForwarded" in obj) and isinstance(obj.get("useXForwarded"), bool):
            config.use_x_forwarded = obj["useXForwarded"]
        if kind == "NetworkListener" or ("bind" in obj and "protocol" in obj):
            listener = _json_listener(config, obj, where, len(config.listeners))
            if listener is not None:
                config.listeners.append(listener)
    if not (recognised or config.listeners):
        raise ConfigError(
            f"{path}: no SystemSettings, NetworkListener or Http object found; export them from the web admin "
            "or the management API"
        )
    return config


def _objects(value, where: str):
    """Every JSON object in the document, with the registry type it declares if any."""
    if isinstance(value, dict):
        kind = value.get("@type") or value.get("type") or value.get("_type")
        yield (kind if isinstance(kind, str) else None), value, where
        for key, item in value.items():
            yield from _objects(item, f"{where}.{key}")
    elif isinstance(value, list):
        if len(value) == 3 and isinstance(value[0], str) and "/" in value[0] and isinstance(value[1], dict):
            # A JMAP method response: ["x:NetworkListener/get", {"list": [...]}, "id"]
            object_type = value[0].split("/")[0].removeprefix("x:")
            items = value[1].get("list", [])
            for index, item in enumerate(items if isinstance(items, list) else []):
                if isinstance(item, dict):
                    yield object_type, item, f"{where}.{object_type}[{index}]"
            return
        for index, item in enumerate(value):
            yield from _objects(item, f"{where}[{index}]")


NOT_A_MAP_016 = ("a set written as {shape}: Stalwart 0.16 refuses it (\"Invalid value for object property\"); write "
                 "{{{example}: true}} (Stalwart's own 0.16 documentation writes sets as arrays: that example fails "
                 "as written, and stalwart-cli passes it on unchanged)")


def _json_members(value) -> tuple[list[str], str | None]:
    """A 0.16 set's members, and why Stalwart refuses it when it is not a map of value -> true."""
    if isinstance(value, dict):
        return [str(key) for key, enabled in value.items() if enabled is True], None
    if isinstance(value, list):
        return [str(item) for item in value], "a JSON array"
    if value is None:
        return [], None
    return [str(value)], "a single value"


def _json_trusted(value, where: str) -> list[TrustedEntry]:
    members, shape = _json_members(value)
    if shape is None:
        return [parse_trusted_entry(text, where, style="json") for text in members]
    return [TrustedEntry(text, where, None, NOT_A_MAP_016.format(shape=shape, example=json.dumps(text))) for text in members]


def _json_listener(config: StalwartConfig, obj: JsonDict, where: str, index: int) -> Listener | None:
    """A NetworkListener as 0.16 builds it; None (with the reason kept) when Stalwart would
    refuse the object: an unknown protocol or a bind that is not a map."""
    name = str(obj.get("name") or obj.get("id") or f"listener-{index + 1}")
    protocol = PROTOCOLS_016.get(str(obj.get("protocol")))
    if protocol is None:
        config.problems.append(f"{where} ({name}): protocol {obj.get('protocol')!r} is not one of {', '.join(PROTOCOLS_016)}: "
                               "Stalwart 0.16 refuses the listener")
        return None
    members, shape = _json_members(obj.get("bind"))
    if shape is not None:
        config.problems.append(f"{where}.bind ({name}): " + NOT_A_MAP_016.format(shape=shape, example=json.dumps(members[0] if members else "[::]:25")))
        return None
    implicit = obj.get("tlsImplicit", obj.get("useImplicitTls", False))
    return Listener(
        id=name,
        protocol=protocol,
        binds=_binds(config, f"{where}.bind", [(f"{where}.bind", member) for member in members]),
        implicit_tls=implicit is True,
        trusted_override=_json_trusted(obj.get("overrideProxyTrustedNetworks"), f"{where}.overrideProxyTrustedNetworks")
        if "overrideProxyTrustedNetworks" in obj
        else None,
    )
