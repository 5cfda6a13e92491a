"""Typed hits: a finding's sentence is written from its fields, through the `Names` it is given."""

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

from proxydiag.rules.finding import make_finding
from proxydiag.rules.said import AS_THEY_ARE, Names, Said, Sentence, endpoint


@dataclass(frozen=True)
class _Reached(Said):
    address: str
    port: int
    greeting: str

    def message(self, names: Names) -> str:
        return f"{endpoint(names, self.address, self.port)} answered {names.text(self.greeting)!r}"


class _Hidden:
    def address(self, address: str) -> str:
        return "192.0.2.1"

    def host(self, name: str) -> str:
        return "host1.anon.invalid"

    def path(self, path: str) -> str:
        return "input1"

    def text(self, text: str) -> str:
        return "220 host1.anon.invalid ESMTP"


def test_a_typed_hit_is_told_as_it_is_and_through_other_names():
    said = _Reached("2001:db8::25", 25, "220 mx.example.net ESMTP")
    finding = make_finding("PD101", said, {})
    assert finding.message == "[2001:db8::25]:25 answered '220 mx.example.net ESMTP'"
    assert finding.message_for(AS_THEY_ARE) == finding.message
    hidden = finding.message_for(_Hidden())
    assert "2001:db8::25" not in hidden and "mx.example.net" not in hidden
    assert hidden == "192.0.2.1:25 answered '220 host1.anon.invalid ESMTP'"


def test_a_sentence_that_names_nothing_is_its_own_message():
    finding = make_finding("PD101", Sentence("no header at all"), {})
    assert finding.message == "no header at all" and finding.message_for(_Hidden()) == "no header at all"


# --- no rule writes its sentence before a view asks ------------------------------------------

RULES_DIR = Path(__file__).resolve().parent.parent / "proxydiag" / "rules"
# The callee and where its message stands among the arguments: an expectation's provenance too.
MESSAGE_TAKERS = {"Hit": (0, "message"), "make_finding": (1, "message"), "Expectation": (1, "source")}
EXPECTATIONS = RULES_DIR.parent / "facts" / "expectations.py"


def _callee(call: ast.Call) -> str:
    func = call.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def _message_argument(call: ast.Call) -> ast.expr | None:
    position, name = MESSAGE_TAKERS[_callee(call)]
    keyword = next((kw.value for kw in call.keywords if kw.arg == name), None)
    return keyword if keyword is not None else call.args[position] if len(call.args) > position else None


def _str_parameters(function: ast.FunctionDef | ast.AsyncFunctionDef | None) -> set[str]:
    if function is None:
        return set()
    arguments = function.args
    every = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
    return {arg.arg for arg in every if arg.annotation is not None and ast.unparse(arg.annotation) == "str"}


def is_prose(node: ast.expr, str_names: set[str]) -> bool:
    """Whether an expression is a ready-made str: a literal, an f-string, a concatenation or a
    %-format of one, a `.format`/`.join`/`str()`, or a parameter the function declares a str."""
    if isinstance(node, ast.JoinedStr) or (isinstance(node, ast.Constant) and isinstance(node.value, str)):
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod)):
        return is_prose(node.left, str_names) or is_prose(node.right, str_names)
    if isinstance(node, ast.IfExp):
        return is_prose(node.body, str_names) or is_prose(node.orelse, str_names)
    if isinstance(node, ast.Call):
        return (isinstance(node.func, ast.Name) and node.func.id == "str") or (
            isinstance(node.func, ast.Attribute) and node.func.attr in ("format", "join"))
    return isinstance(node, ast.Name) and node.id in str_names


def _literal(arguments: list[ast.expr]) -> bool:
    return all(isinstance(arg, ast.Constant) and isinstance(arg.value, str) for arg in arguments)


def prose_messages(source: str) -> list[int]:
    """The lines where a `Hit` or `make_finding` is handed a sentence already written, and where
    a `Sentence` is built from anything but a plain literal (it must name nothing)."""
    lines = []

    def visit(node: ast.AST, function: ast.FunctionDef | ast.AsyncFunctionDef | None) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            function = node
        if isinstance(node, ast.Call) and _callee(node) in MESSAGE_TAKERS:
            message = _message_argument(node)
            if message is not None and is_prose(message, _str_parameters(function)):
                lines.append(node.lineno)
        if isinstance(node, ast.Call) and _callee(node) == "Sentence" and not _literal(node.args):
            lines.append(node.lineno)
        for child in ast.iter_child_nodes(node):
            visit(child, function)

    visit(ast.parse(source), None)
    return lines


@pytest.mark.parametrize("source", [
    'Hit(f"{conn.tcp.dst_addr} refused", [conn])',
    'Hit("no header", [conn])',
    'Hit("to " + where, [conn])',
    'Hit("to %s" % where, [conn])',
    'Hit(message="{} refused".format(where))',
    'Hit(", ".join(parts))',
    'make_finding("PD101", f"{address} refused", {})',
    'def finding(code: str, message: str) -> Finding:\n    return make_finding(code, message, {})',
    'Hit(Sentence(f"{address} refused"))',
    'Expectation("any", f"--expect {value}")',
    'Expectation("none", source="--trusted-networks: source not in the list")',
])
def test_a_sentence_written_before_the_view_is_caught(source):
    assert prose_messages(source) == [source.count("\n") + 1]


@pytest.mark.parametrize("source", [
    "Hit(RefusedAtOnce(server_endpoint(conn), conn.greeting), [conn])",
    "Hit(why, [conn])",
    'Hit(Sentence("The capture holds no mail traffic."))',
    "def finding(code: str, message: Said) -> Finding:\n    return make_finding(code, message, {})",
    "Expectation(value, ExpectOption(value, port))",
])
def test_a_typed_hit_passes(source):
    assert prose_messages(source) == []


@pytest.mark.parametrize("module", sorted(path.name for path in RULES_DIR.glob("*.py")))
def test_rules_hand_over_typed_hits_not_sentences(module):
    lines = prose_messages((RULES_DIR / module).read_text(encoding="utf-8"))
    assert not lines, f"proxydiag/rules/{module} hands a finished sentence to a finding at lines {lines}: " \
                      "write a Said kind with typed fields and its message(names)"


def test_expectations_hand_over_a_typed_provenance_not_a_sentence():
    lines = prose_messages(EXPECTATIONS.read_text(encoding="utf-8"))
    assert not lines, f"proxydiag/facts/expectations.py writes an expectation's provenance as a sentence at lines {lines}: " \
                      "use a Provenance kind (facts/provenance.py) with typed fields"
