"""Stalwart's configuration as far as the PROXY protocol is concerned.

Two styles: the TOML `config.toml` of versions up to 0.15 (`server.proxy.trusted-networks`,
`server.listener.<id>.*`, `http.use-x-forwarded`), and the JSON registry objects of 0.16
(`SystemSettings.proxyTrustedNetworks`, `NetworkListener`, `Http.useXForwarded`), as
exported from the web admin or returned by the JMAP management API. Sets may be written
as lists or as maps of value -> true; both are read.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

MIN_PREFIX = 8  # Stalwart rejects masks under /8 (registry/src/types/ipmask.rs)


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


def parse_trusted_entry(text: str, where: str) -> TrustedEntry:
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

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "style": self.style,
            "trusted_networks": [entry.text for entry in self.trusted],
            "use_x_forwarded": self.use_x_forwarded,
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
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read the Stalwart configuration ({getattr(error, 'strerror', None) or error})") from None
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")) and _looks_like_json(stripped):
        try:
            return from_json(json.loads(stripped), path)
        except RecursionError:
            raise ConfigError(f"{path}: nested too deeply to be a Stalwart configuration") from None
    try:
        document = tomllib.loads(text)
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a Stalwart configuration") from None
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


def _set_values(flat: dict[str, object], key: str) -> list[tuple[str, str]] | None:
    """A Stalwart list: `key = [..]`, `key.N = ..`, or a map `key = {"10.0.0.0/8" = true}`."""
    found = _values_under(flat, key)
    if not found:
        return None
    values = []
    for name, value in found:
        if isinstance(value, bool):
            if value:
                values.append((name, name[len(key) + 1 :].strip('"')))
        else:
            values.append((name, str(value)))
    return values


def from_toml(document: dict, path: str) -> StalwartConfig:
    flat = _flatten(document)
    config = StalwartConfig(path=path, style="toml")
    for where, text in _set_values(flat, "server.proxy.trusted-networks") or []:
        config.trusted.append(parse_trusted_entry(text, where))
    for key in ("http.use-x-forwarded", "server.http.use-x-forwarded"):
        if isinstance(flat.get(key), bool):
            config.use_x_forwarded = flat[key]
    listener_ids = sorted({name.split(".")[2] for name in flat if name.startswith("server.listener.") and name.count(".") >= 3})
    for listener_id in listener_ids:
        base = f"server.listener.{listener_id}"
        override = _set_values(flat, f"{base}.proxy.trusted-networks")
        config.listeners.append(
            Listener(
                id=listener_id,
                protocol=_str(flat.get(f"{base}.protocol")),
                binds=[bind for _, text in _set_values(flat, f"{base}.bind") or [] if (bind := parse_bind(text))],
                implicit_tls=flat.get(f"{base}.tls.implicit") is True,
                trusted_override=None if override is None else [parse_trusted_entry(t, w) for w, t in override],
                override_toggle=f"{base}.proxy.override" in flat,
            )
        )
    return config


def _str(value) -> str | None:
    return str(value) if value is not None else None


def parse_bind(text: str) -> tuple[str, int] | None:
    """'[::]:25', '0.0.0.0:465', '127.0.0.1:10025', or a bare port."""
    text = str(text).strip()
    if text.isascii() and text.isdigit():
        return "0.0.0.0", int(text)
    host, _, port = text.rpartition(":")
    if not (port.isascii() and port.isdigit()) or not host or int(port) > 65535:
        return None
    return host.strip("[]"), int(port)


# --- JSON registry objects, 0.16 -------------------------------------------------------


def from_json(document, path: str) -> StalwartConfig:
    config = StalwartConfig(path=path, style="json")
    recognised = False
    for kind, obj, where in _objects(document, "$"):
        recognised = recognised or kind in ("SystemSettings", "Http", "NetworkListener") or any(
            key in obj for key in ("proxyTrustedNetworks", "useXForwarded")
        )
        if kind == "SystemSettings" or "proxyTrustedNetworks" in obj:
            config.trusted.extend(
                parse_trusted_entry(text, f"{where}.proxyTrustedNetworks") for text in _json_set(obj.get("proxyTrustedNetworks"))
            )
        if (kind == "Http" or "useXForwarded" in obj) and isinstance(obj.get("useXForwarded"), bool):
            config.use_x_forwarded = obj["useXForwarded"]
        if kind == "NetworkListener" or ("bind" in obj and "protocol" in obj):
            config.listeners.append(_json_listener(obj, where, len(config.listeners)))
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
            # A JMAP method response: ["NetworkListener/get", {"list": [...]}, "id"]
            object_type = value[0].split("/")[0]
            for index, item in enumerate(value[1].get("list", [])):
                if isinstance(item, dict):
                    yield object_type, item, f"{where}.{object_type}[{index}]"
            return
        for index, item in enumerate(value):
            yield from _objects(item, f"{where}[{index}]")


def _json_set(value) -> list[str]:
    if isinstance(value, dict):
        return [key for key, enabled in value.items() if enabled]
    if isinstance(value, list):
        return [str(item) for item in value]
    if isinstance(value, str):
        return [value]
    return []


def _json_listener(obj: dict, where: str, index: int) -> Listener:
    override = _json_set(obj.get("overrideProxyTrustedNetworks"))
    implicit = obj.get("tlsImplicit", obj.get("useImplicitTls", False))
    return Listener(
        id=str(obj.get("name") or obj.get("id") or f"listener-{index + 1}"),
        protocol=_str(obj.get("protocol")),
        binds=[bind for text in _json_set(obj.get("bind")) if (bind := parse_bind(text))],
        implicit_tls=implicit is True,
        trusted_override=[parse_trusted_entry(text, f"{where}.overrideProxyTrustedNetworks") for text in override]
        if "overrideProxyTrustedNetworks" in obj
        else None,
    )
