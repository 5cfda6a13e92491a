"""--anonymize: every IP address and host name in the document replaced by a stable
pseudonym, before any renderer sees it.

A pseudonym keeps the address family and the kind of address (loopback, private,
shared CGNAT space, link-local, public), so a report still shows "a private client
behind a public proxy". The same input gets the same pseudonym everywhere in one
report. `::1` and the unspecified addresses identify nobody and stay as they are.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.])")
IPV6 = re.compile(r"(?<![\w:.])(?=[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*:)[0-9A-Fa-f:.]{2,45}(?![\w:])")
HOSTNAME = re.compile(r"(?<![\w.-])(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}(?![\w-])")
# Keys whose strings come from the wire (where host names appear); findings quote them.
WIRE_KEYS = {"connections", "findings", "stalwart_config", "inputs", "logs"}
NOT_HOSTNAMES = re.compile(r"\.(?:md|txt|toml|json|pcap|pcapng|py|pem|conf|cfg|log)$", re.I)

V4_KINDS = [
    (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("127.200.0.0/16")),
    (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("10.200.0.0/16")),
    (ipaddress.ip_network("172.16.0.0/12"), ipaddress.ip_network("10.201.0.0/16")),
    (ipaddress.ip_network("192.168.0.0/16"), ipaddress.ip_network("10.202.0.0/16")),
    (ipaddress.ip_network("100.64.0.0/10"), ipaddress.ip_network("100.100.0.0/16")),
    (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("169.254.200.0/24")),
]
V4_PUBLIC = ipaddress.ip_network("198.18.0.0/15")
V6_KINDS = [
    (ipaddress.ip_network("fc00::/7"), ipaddress.ip_network("fd00:200::/64")),
    (ipaddress.ip_network("fe80::/10"), ipaddress.ip_network("fe80::200:0:0/96")),
]
V6_PUBLIC = ipaddress.ip_network("2001:db8:200::/64")


@dataclass
class Pseudonyms:
    originals: set[str] = field(default_factory=set)
    mapping: dict[str, str] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)

    def address(self, text: str) -> str:
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            return text
        if ip.is_unspecified or (ip.version == 6 and ip.is_loopback):
            return text
        key = str(ip)
        if key not in self.mapping:
            self.mapping[key] = self._new_address(ip)
        return self.mapping[key]

    def _new_address(self, ip) -> str:
        if ip.version == 6 and ip.ipv4_mapped:
            return "::ffff:" + self.address(str(ip.ipv4_mapped))
        kinds, public = (V4_KINDS, V4_PUBLIC) if ip.version == 4 else (V6_KINDS, V6_PUBLIC)
        pool = next((target for source, target in kinds if ip in source), public)
        while True:
            count = self.counters.get(str(pool), 0) + 1
            self.counters[str(pool)] = count
            candidate = str(pool.network_address + count)
            if candidate not in self.originals:
                return candidate

    def hostname(self, name: str) -> str:
        key = name.lower()
        if key not in self.mapping:
            count = self.counters.get("host", 0) + 1
            self.counters["host"] = count
            self.mapping[key] = f"host{count}.anon.invalid"
        return self.mapping[key]


def anonymize(document: dict) -> dict:
    pseudonyms = Pseudonyms()
    hostnames: set[str] = set()
    for key in WIRE_KEYS:
        for text in _strings(document.get(key)):
            pseudonyms.originals.update(IPV4.findall(text))
            pseudonyms.originals.update(match for match in IPV6.findall(text) if _is_ip(match))
            hostnames.update(name for name in HOSTNAME.findall(text) if not NOT_HOSTNAMES.search(name) and not _is_ip(name))
    hostname_pattern = (
        re.compile(r"(?<![\w.-])(" + "|".join(re.escape(n) for n in sorted(hostnames, key=len, reverse=True)) + r")(?![\w-])", re.I)
        if hostnames else None
    )

    def rewrite(text: str) -> str:
        text = IPV4.sub(lambda m: pseudonyms.address(m.group(0)), text)
        text = IPV6.sub(lambda m: pseudonyms.address(m.group(0)) if _is_ip(m.group(0)) else m.group(0), text)
        if hostname_pattern is not None:
            text = hostname_pattern.sub(lambda m: pseudonyms.hostname(m.group(0)), text)
        return text

    result = _transform(document, rewrite)
    result["anonymized"] = True
    return result


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _transform(value, rewrite):
    if isinstance(value, str):
        return rewrite(value)
    if isinstance(value, dict):  # keys too: counts per address are keyed by the address
        return {(rewrite(key) if isinstance(key, str) else key): _transform(item, rewrite) for key, item in value.items()}
    if isinstance(value, list):
        return [_transform(item, rewrite) for item in value]
    return value
