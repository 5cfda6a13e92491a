"""A configuration line as a report may show it: the directive and its arguments, never a
comment, never the value of a secret-bearing directive or key, and bounded in length (a
one-line JSON file, Caddy's autosave.json or compact Envoy JSON, is one "line" holding
every token and key of the file).

The line itself stays the fact (fixes edit it in place); only what is shown passes here."""

from __future__ import annotations

import re

MASK = "<secret>"
LIMIT = 160  # characters shown of one line
BEFORE_FOCUS = 40  # of a long line, shown before the key the finding is about
# Tabs are shown as the spaces an editor shows (HAProxy's packaged files and `caddy fmt`
# indent with tabs, HAProxy files align columns with them): a tab left in would reach the
# report as `\x09`, as every control character of the user's text does.
INDENT_TAB, COLUMN_TAB = 4, 8

# Names whose value is a secret wherever they stand: keys of YAML/JSON/TOML, directives of
# HAProxy/nginx/stunnel/Caddy, Traefik and compose label names, Stalwart's settings.
_SECRET_NAME = (
    r"[\w.-]*(?:pass(?:word|wd|phrase)?|secret|token|api[_-]?key|private[_-]?key|key[_-]?pem|credential|"
    r"authorization|auth[_-]?header|bearer|cookie|basic[_-]?auth|basicauth[\w.-]*users|htpasswd|users|"
    r"insecure-password|signature|hmac|salt|session[_-]?key|client[_-]?secret|dkim[\w.-]*|stats[ \t]+auth)"
)
# `"name": "value"` (JSON), `name: value` / `name = value` (YAML, TOML, INI), `name=value`
# (labels, flags), where the name is secret-bearing: the value becomes the mark.
_KEYED = re.compile(
    r"""(?ix)
    (?P<name>["']?(?<![\w.-])""" + _SECRET_NAME + r"""["']?)
    (?P<sep>\s*[:=]\s*)
    (?P<value>"(?:[^"\\]|\\.)*"|'[^']*'|[^\s,;}\]\)"']+)
    """
)
# A directive line whose arguments are the secret: `user alice password $6$...`,
# `proxy_set_header Authorization "Basic ..."`, `stats auth admin:pw`, `basic_auth { alice $2a$... }`.
_DIRECTIVE_ARGUMENTS = re.compile(
    r"""(?ix)
    (?P<name>(?:^|(?<=[\s{;]))(?:(?:insecure-)?password|stats[ \t]+auth|auth|
        (?:proxy_set_header|add_header|http-(?:request|response)[ \t]+(?:set|add)-header|header_up|header_down|
           request_header|header)[ \t]+(?:["']?(?:authorization|proxy-authorization|cookie|x-api-key|x-auth-token)["']?)))
    (?P<value>(?:[ \t]+[^\s;#{}]+)+)
    """
)
_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?(?:-----END [A-Z0-9 ]+-----|$)", re.S)
_CREDENTIAL_URL = re.compile(r"(?<=://)[^/\s:@\"']+:[^/\s@\"']*@")  # user:password@ after a scheme
# A comment: `#` or `//` at the start or after blank space, outside quotes (the line is
# scanned, not matched, so quoted `#` in a value survives).
_QUOTES = "\"'"


def shown_line(text: str, focus: str = "") -> str:
    """`text` as a report may quote it; `focus`, the key the citation is about, picks the
    window of a line longer than LIMIT."""
    indent = text[: len(text) - len(text.lstrip(" \t"))].expandtabs(INDENT_TAB)
    line = _without_comment(text.strip()).expandtabs(COLUMN_TAB)
    line = _PEM.sub(MASK, line)
    line = _CREDENTIAL_URL.sub(f"{MASK}@", line)
    line = _KEYED.sub(lambda match: f"{match.group('name')}{match.group('sep')}{_mask_like(match.group('value'))}", line)
    line = _DIRECTIVE_ARGUMENTS.sub(lambda match: f"{match.group('name')} {MASK}", line)
    return indent + _bounded(line, focus) if line else ""


def _mask_like(value: str) -> str:
    return f'"{MASK}"' if value[:1] in _QUOTES else MASK


def _without_comment(line: str) -> str:
    quote = ""
    for index, char in enumerate(line):
        if quote:
            if char == quote and line[index - 1] != "\\":
                quote = ""
        elif char in _QUOTES:
            quote = char
        elif char == "#" and (index == 0 or line[index - 1] in " \t"):
            return line[:index].rstrip()
        elif line.startswith("//", index) and (index == 0 or line[index - 1] in " \t"):
            return line[:index].rstrip()
    return line


def _bounded(line: str, focus: str) -> str:
    if len(line) <= LIMIT:
        return line
    at = line.find(f'"{focus}"') if focus else -1
    if at < 0 and focus:
        at = line.find(focus)
    start = max(0, at - BEFORE_FOCUS) if at >= 0 else 0
    window = line[start : start + LIMIT]
    return ("…" if start else "") + window + ("…" if start + LIMIT < len(line) else "")
