"""Where things are written in Stalwart's configuration file: the reader
(proxydiag/stalwart_config.py) keeps keys, a finding cites lines."""

from __future__ import annotations

import re
from dataclasses import dataclass

from proxydiag.configs.stalwart import Listener, StalwartConfig
from proxydiag.parsers.userinput import read_text_bounded


@dataclass(frozen=True)
class StalwartLines:
    path: str
    lines: tuple[str, ...]
    style: str

    @classmethod
    def of(cls, config: StalwartConfig) -> StalwartLines:
        try:
            text = read_text_bounded(config.path)
        except OSError:
            text = ""
        return cls(config.path, tuple(text.splitlines()), config.style)

    def _first(self, patterns: list[str]) -> str:
        for pattern in patterns:
            regex = re.compile(pattern)
            for number, line in enumerate(self.lines, start=1):
                if regex.search(line):
                    return f"{self.path}:{number}"
        return self.path

    def _first_in_table(self, table: str, pattern: str) -> str | None:
        """file:line of the first line matching `pattern` under the TOML table `[table]` itself
        (a listener's own `proxy.trusted-networks` is not the server's)."""
        regex, inside = re.compile(pattern), False
        for number, line in enumerate(self.lines, start=1):
            stripped = line.split("#", 1)[0].strip()
            if stripped.startswith("[") and stripped.endswith("]"):
                inside = stripped[1:-1].strip() == table
            elif inside and regex.search(line):
                return f"{self.path}:{number}"
        return None

    def listener(self, listener_id: str) -> str:
        """file:line of the listener's definition."""
        name = re.escape(listener_id)
        if self.style == "toml":
            return self._first([rf"^\s*\[\s*server\.listener\.[\"']?{name}[\"']?\s*\]",
                                rf"^\s*server\.listener\.[\"']?{name}[\"']?\.", rf"\b{name}\b"])
        return self._first([rf"\"name\"\s*:\s*\"{name}\"", rf"\"{name}\""])

    def trust(self, listener: Listener) -> str:
        """file:line of the trusted networks that apply to the listener."""
        if listener.trusted_override:
            name = re.escape(listener.id)
            if self.style == "toml":
                own = self._first_in_table(f"server.listener.{listener.id}", r"^\s*proxy\.trusted-networks")
                return own or self._first([rf"server\.listener\.[\"']?{name}[\"']?\.proxy",
                                           r"^\s*\[\s*server\.listener\..*proxy"])
            return self._first([r"overrideProxyTrustedNetworks"])
        if self.style == "toml":
            found = self._first([r"^\s*\[\s*server\.proxy\s*\]", r"^\s*server\.proxy\.trusted-networks"])
            return found if found != self.path else self._first_in_table("server", r"^\s*proxy\.trusted-networks") or found
        return self._first([r"proxyTrustedNetworks"])
