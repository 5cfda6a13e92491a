"""Structured configuration files (YAML, JSON, TOML) as plain dicts and lists that still
know their lines, for the readers of Traefik, Caddy, Envoy and Kubernetes files.

YAML (and JSON, which PyYAML reads as YAML) is composed into nodes, whose marks give the
lines; TOML (tomllib keeps no positions) gets its lines from a scan of its `[table]`
headers and `key = value` lines. Every failure is a `ConfigReadError`.
"""

from __future__ import annotations

import re
import tomllib
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor

from proxydiag.configs.model import ConfigReadError, Origin

MAX_DEPTH = 200
MAX_NODES = 200_000  # aliases are expanded: a few lines of anchors can stand for billions of nodes


class Tree(dict[Any, Any]):  # YAML keys may be numbers
    """A mapping with the line of each key (1-based; 0: not known)."""

    line: int
    key_lines: dict[Any, int]

    def __init__(self, line: int = 0) -> None:
        super().__init__()
        self.line, self.key_lines = line, {}


class Items(list[Any]):
    """A sequence with the line of each item."""

    line: int
    item_lines: list[int]

    def __init__(self, line: int = 0) -> None:
        super().__init__()
        self.line, self.item_lines = line, []


class Source:
    """A file's text, for citing its lines."""

    def __init__(self, path: str, text: str) -> None:
        self.path, self.lines = path, text.splitlines()

    def origin(self, line: int, focus: str = "") -> Origin:
        """Line `line`; `focus`, what on it the citation is about (a key or a value), picks
        the part of a long line that a report shows."""
        line = max(1, min(line, len(self.lines) or 1))
        return Origin(self.path, line, self.lines[line - 1] if line <= len(self.lines) else "", focus)

    def at(self, tree: Any, key: Any = None) -> Origin:
        """Where `tree[key]` (or the tree itself) was written."""
        if key is not None and isinstance(tree, Tree) and tree.key_lines.get(key):
            return self.origin(tree.key_lines[key], str(key))
        return self.origin(getattr(tree, "line", 0) or 1)

    def error(self, tree: Any, message: str, key: Any = None) -> ConfigReadError:
        return ConfigReadError(self.path, self.at(tree, key).line, message)


# --- YAML and JSON -------------------------------------------------------------------------


def yaml_documents(text: str, path: str) -> list[Any]:
    """Every document of a (multi-document) YAML or JSON text."""
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
        constructor = SafeConstructor()
        budget = [MAX_NODES]
        return [_from_node(node, constructor, 0, budget) for node in nodes if node is not None]
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else None
        raise ConfigReadError(path, line, f"not valid YAML: {error.problem or error.context}") from None
    except (yaml.YAMLError, ConstructorError, ValueError, TypeError, RecursionError) as error:
        raise ConfigReadError(path, None, f"not valid YAML: {str(error).splitlines()[0] if str(error) else error}") from None


def _from_node(node: yaml.Node, constructor: SafeConstructor, depth: int, budget: list[int]) -> Any:
    budget[0] -= 1
    if depth > MAX_DEPTH or budget[0] < 0:
        raise ValueError("nested too deeply, or too many nodes")
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        tree = Tree(line)
        for key_node, value_node in node.value:
            key = _from_node(key_node, constructor, depth + 1, budget)
            if isinstance(key, (dict, list)):
                raise ValueError(f"line {key_node.start_mark.line + 1}: a mapping key must be a plain value")
            tree[key] = _from_node(value_node, constructor, depth + 1, budget)
            tree.key_lines[key] = key_node.start_mark.line + 1
        return tree
    if isinstance(node, yaml.SequenceNode):
        items = Items(line)
        for item in node.value:
            items.append(_from_node(item, constructor, depth + 1, budget))
            items.item_lines.append(item.start_mark.line + 1)
        return items
    return constructor.construct_object(node, deep=True)


# --- TOML ----------------------------------------------------------------------------------

# Each name starts and ends on a non-blank so that the blanks around it have one reading:
# `\s*(.+?)\s*` takes cubic time on a line of blanks (regexploit).
TOML_TABLE = re.compile(r"^\s*(\[\[?)[ \t]*([^\]\s](?:[^\]]*[^\]\s])?)[ \t]*\]\]?[ \t]*(?:#.*)?$")
TOML_KEY = re.compile(r"^\s*([A-Za-z0-9_\-.\"'](?:[A-Za-z0-9_\-.\"' ]*[A-Za-z0-9_\-.\"'])?)[ \t]*=")


def toml_document(text: str, path: str) -> Tree:
    try:
        data = tomllib.loads(text)
    except RecursionError:
        raise ConfigReadError(path, None, "not valid TOML: nested too deeply") from None
    except tomllib.TOMLDecodeError as error:
        match = re.search(r"line (\d+)", str(error))
        raise ConfigReadError(path, int(match.group(1)) if match else None, f"not valid TOML: {error}") from None
    lines = _toml_lines(text)
    try:
        return _from_toml(data, (), lines, 1)
    except ValueError as error:
        raise ConfigReadError(path, None, f"not valid TOML: {error}") from None


def _toml_lines(text: str) -> dict[tuple[str, ...], int]:
    """The line of each table and key, by dotted path (array tables: `name#index`)."""
    lines: dict[tuple[str, ...], int] = {}
    counts: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    for number, raw in enumerate(text.splitlines(), start=1):
        header = TOML_TABLE.match(raw)
        if header:
            path = _toml_key_path(header.group(2))
            if header.group(1) == "[[":
                index = counts.get(path, 0)
                counts[path] = index + 1
                path = path[:-1] + (f"{path[-1]}#{index}",) if path else path
            table = _resolve_arrays(path, counts)
            lines.setdefault(table, number)
            continue
        key = TOML_KEY.match(raw)
        if key:
            lines.setdefault(table + _toml_key_path(key.group(1)), number)
    return lines


def _resolve_arrays(path: tuple[str, ...], counts: dict[tuple[str, ...], int]) -> tuple[str, ...]:
    """`[a.b]` inside the last `[[a]]` is `a#N.b`."""
    resolved: list[str] = []
    plain: list[str] = []
    for part in path:
        plain.append(part.split("#")[0])
        count = counts.get(tuple(plain))
        resolved.append(part if "#" in part or not count else f"{part}#{count - 1}")
    return tuple(resolved)


def _toml_key_path(text: str) -> tuple[str, ...]:
    return tuple(part.strip().strip("\"'") for part in text.split("."))


def _from_toml(value: Any, path: tuple[str, ...], lines: dict[tuple[str, ...], int], fallback: int) -> Any:
    if len(path) > MAX_DEPTH:  # `a.a.a…a = 1` is valid TOML, and as deep as it is long
        raise ValueError("nested too deeply")
    line = lines.get(path, fallback)
    if isinstance(value, dict):
        tree = Tree(line)
        for key, item in value.items():
            tree[key] = _from_toml(item, path + (key,), lines, line)
            tree.key_lines[key] = lines.get(path + (key,), line)
        return tree
    if isinstance(value, list):
        items = Items(line)
        for index, item in enumerate(value):
            item_path = path[:-1] + (f"{path[-1]}#{index}",) if path else path
            item_line = lines.get(item_path, line)
            items.append(_from_toml(item, item_path, lines, item_line))
            items.item_lines.append(item_line)
        return items
    return value


# --- typed access --------------------------------------------------------------------------


def mapping(source: Source, tree: Any, key: str) -> Tree:
    """`tree[key]` as a mapping ({} when absent)."""
    value = tree.get(key) if isinstance(tree, dict) else None
    if value is None:
        return Tree(getattr(tree, "line", 0))
    if not isinstance(value, Tree):
        raise source.error(tree, f"{key}: expected a mapping", key)
    return value


def sequence(source: Source, tree: Any, key: str) -> Items:
    value = tree.get(key) if isinstance(tree, dict) else None
    if value is None:
        return Items(getattr(tree, "line", 0))
    if not isinstance(value, Items):
        raise source.error(tree, f"{key}: expected a list", key)
    return value


def text(source: Source, tree: Any, key: str) -> str | None:
    """`tree[key]` as text (numbers written without quotes are accepted)."""
    value = tree.get(key) if isinstance(tree, dict) else None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise source.error(tree, f"{key}: expected a value, not {type(value).__name__}", key)
    return str(value)


def items_of(source: Source, items: Items, what: str) -> list[tuple[Tree, int]]:
    """The mappings of a list, with their lines."""
    out = []
    for item, line in zip(items, items.item_lines):
        if not isinstance(item, Tree):
            raise ConfigReadError(source.path, line or None, f"{what}: expected a mapping")
        out.append((item, line))
    return out


def flag(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "on"))
