"""HAProxy's configuration as lines and sections: word splitting, sections with the
`defaults` in force, and the files of a split configuration gathered into one
(doc/configuration.txt in haproxy/haproxy, 2.6: 2.2 "Quoting and escaping", 4 "Proxies")."""

from __future__ import annotations

from dataclasses import dataclass, field

from proxydiag.configs.model import ConfigReadError, Origin

PROXY_SECTIONS = frozenset({"frontend", "backend", "listen", "defaults"})
OTHER_SECTIONS = frozenset({
    "global", "peers", "resolvers", "userlist", "mailers", "program", "http-errors", "ring", "cache", "crt-store",
    "log-forward", "traces", "acme", "fcgi-app", "dynamic-update",
})


@dataclass
class Line:
    words: list[str]
    origin: Origin


@dataclass
class Section:
    kind: str
    name: str
    origin: Origin
    defaults: Section | None = None
    lines: list[Line] = field(default_factory=list)

    def find(self, *keyword: str) -> list[Line]:
        """Lines starting with these words, this section's own."""
        return [line for line in self.lines if tuple(line.words[: len(keyword)]) == keyword]

    def last(self, *keyword: str) -> Line | None:
        """The last such line here, else in the defaults in force."""
        own = self.find(*keyword)
        if own:
            return own[-1]
        return self.defaults.last(*keyword) if self.defaults is not None else None


def group_files(files: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """Files in the order given, gathered where one cannot stand alone: a file joins the
    ones before it when those hold no proxy yet (global, defaults), when it holds no
    frontend or listen of its own (backends only), or when it uses a backend it does not
    define. Files that each stand alone are separate proxies (a chain of two)."""
    groups: list[list[tuple[str, str]]] = []
    for path, text in files:
        kinds, defined, used = _outline(text)
        previous = [_outline(other)[0] for _, other in groups[-1]] if groups else []
        lone = bool(kinds & {"frontend", "listen"}) and used <= defined
        if groups and (not lone or not any(earlier & {"frontend", "listen", "backend"} for earlier in previous)):
            groups[-1].append((path, text))
        else:
            groups.append([(path, text)])
    return groups


def _outline(text: str) -> tuple[set[str], set[str], set[str]]:
    """The section kinds of a file, the backends it defines and those it names."""
    kinds: set[str] = set()
    defined: set[str] = set()
    used: set[str] = set()
    for raw in text.splitlines():
        words = split_words(raw) or []
        if words and (words[0] in PROXY_SECTIONS or words[0] in OTHER_SECTIONS):
            kinds.add(words[0])
            if words[0] in ("backend", "listen") and len(words) > 1:
                defined.add(words[1])
        elif words[:1] in (["use_backend"], ["default_backend"]) and len(words) > 1 and "%[" not in words[1]:
            used.add(words[1])
    return kinds, defined, used


def split_words(line: str) -> list[str] | None:
    """HAProxy's word splitting: blanks separate, quotes group, backslash escapes, `#`
    starts a comment. None when a quote is left open."""
    words: list[str] = []
    current: list[str] = []
    quote = ""
    in_word = False
    index = 0
    while index < len(line):
        char = line[index]
        if quote:
            if char == quote:
                quote = ""
            elif char == "\\" and quote == '"' and index + 1 < len(line):
                index += 1
                current.append(line[index])
            else:
                current.append(char)
        elif char in "\"'":
            quote, in_word = char, True
        elif char == "\\" and index + 1 < len(line):
            index += 1
            current.append(line[index])
            in_word = True
        elif char == "#":
            break
        elif char in " \t\r\n\f\v":
            if in_word:
                words.append("".join(current))
                current, in_word = [], False
        else:
            current.append(char)
            in_word = True
        index += 1
    if quote:
        return None
    if in_word:
        words.append("".join(current))
    return words


def read_sections(files: list[tuple[str, str]]) -> list[Section]:
    """Every section of the files, in order: a section ends with its file, a defaults
    section applies to the proxies after it in later files too."""
    sections: list[Section] = []
    named_defaults: dict[str, Section] = {}
    last_defaults: Section | None = None
    for path, text in files:
        last_defaults = _file_sections(path, text, sections, named_defaults, last_defaults)
    if not any(section.kind in ("frontend", "listen", "backend") for section in sections):
        raise ConfigReadError(files[0][0], None, "no frontend, backend or listen section: not an HAProxy configuration")
    return sections


def _file_sections(path: str, text: str, sections: list[Section], named_defaults: dict[str, Section],
                   last_defaults: Section | None) -> Section | None:
    current: Section | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        origin = Origin(path, number, raw)
        words = split_words(raw)
        if words is None:
            raise ConfigReadError(path, number, "unmatched quote")
        if not words:
            continue
        keyword = words[0]
        if keyword in PROXY_SECTIONS or keyword in OTHER_SECTIONS:
            name = words[1] if len(words) > 1 and words[1] != "from" else ""
            current = Section(keyword, name, origin)
            if keyword in ("frontend", "backend", "listen") and not name:
                raise ConfigReadError(path, number, f"'{keyword}' needs a name")
            if keyword in ("frontend", "backend", "listen") and len(words) > 2 and words[2] != "from":
                raise ConfigReadError(path, number, f"'{' '.join(words[:3])}': HAProxy 2.x refuses anything after the "
                                      "section name (\"please use the 'bind' keyword for listening addresses\"): "
                                      f"write 'bind {words[2]}' inside the section")
            if keyword in PROXY_SECTIONS:
                current.defaults = _defaults_for(words, last_defaults, named_defaults, path, number)
            if keyword == "defaults":
                last_defaults = current
                if name:
                    named_defaults[name] = current
            sections.append(current)
        elif current is None:
            raise ConfigReadError(path, number, f"unknown keyword '{keyword}' out of section")
        else:
            current.lines.append(Line(words, origin))
    return last_defaults


def _defaults_for(words: list[str], last: Section | None, named: dict[str, Section], path: str, number: int):
    if "from" in words[1:]:
        index = words.index("from")
        if index + 1 >= len(words) or words[index + 1] not in named:
            raise ConfigReadError(path, number, "'from' names no defaults section defined above")
        return named[words[index + 1]]
    return last
