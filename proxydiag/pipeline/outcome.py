"""What every command's run gives back (`Outcome`: the report to render and what the exit
code rests on), and what the runs share: the one-line refusal (`Unusable`), the output
files checked before any work, and the judging options turned into `Settings`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from proxydiag.report.model import Report

if TYPE_CHECKING:
    from proxydiag.pipeline.analysis import Settings

EXIT_OK, EXIT_FINDINGS, EXIT_UNUSABLE = 0, 1, 2
FAILING = {"error": frozenset({"error"}), "warning": frozenset({"error", "warning"}), "never": frozenset()}

Say = Callable[[str], None]  # one line on stderr, as it happens


class Unusable(Exception):
    """The command cannot run (a bad option, an output that cannot be written): one line
    for the user, exit 2."""


@dataclass
class Outcome:
    """A command's run: the report to render (None: nothing to show, or the events were the
    report), the severities of its findings, and one line for each part of the input that
    could not be read or written, said as it was known (exit 2 whatever the findings)."""

    report: Report | None = None
    severities: list[str] = field(default_factory=list)
    unread: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.unread)

    def exit_code(self, fail_on: str) -> int:
        if self.failed:
            return EXIT_UNUSABLE
        return EXIT_FINDINGS if any(severity in FAILING[fail_on] for severity in self.severities) else EXIT_OK


class Request(Protocol):
    @property
    def say(self) -> Say: ...


R = TypeVar("R", bound=Request)


def entry(run: Callable[[R], Outcome]) -> Callable[[R], Outcome]:
    """A command's run that says why it cannot run, in one line, instead of raising."""
    @wraps(run)
    def guarded(request: R) -> Outcome:
        try:
            return run(request)
        except Unusable as refusal:
            request.say(str(refusal))
            return Outcome(unread=[str(refusal)])
    return guarded


def check_outputs(outputs: Sequence[tuple[str, Path | None]], inputs: Iterable[Path | str | None] = ()) -> None:
    """Before any work: each output can be written and names none of the inputs (nor another output)."""
    from proxydiag.outputs import OutputError, check_writable, refuse_inputs

    try:
        refuse_inputs(outputs, inputs)
        for _, path in outputs:
            if path is not None:
                check_writable(path)
    except OutputError as error:
        raise Unusable(str(error)) from None


@dataclass
class JudgeOptions:
    """How the traffic is judged, as the command line gave it (analyze and sniff)."""

    expect: Sequence[str] = ()
    trusted_networks: str | None = None
    stalwart_config: Path | None = None
    ports: str | None = None
    min_connections: int = 5
    header_delay: float = 1.0
    greeting_timeout: float = 5.0
    internal_clients: bool = False

    def settings(self) -> Settings:
        from proxydiag.configs.stalwart import ConfigError
        from proxydiag.facts.expectations import ExpectationError
        from proxydiag.pipeline.analysis import Settings

        try:
            return Settings.from_options(
                expect=self.expect, trusted_networks=self.trusted_networks, stalwart_config=self.stalwart_config,
                ports=self.ports, min_connections=self.min_connections, header_delay=self.header_delay,
                greeting_timeout=self.greeting_timeout, internal_clients=self.internal_clients,
            )
        except (ExpectationError, ConfigError, ValueError) as error:
            raise Unusable(str(error)) from None
