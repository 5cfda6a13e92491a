"""Both cores: a capture's flows shared out among worker processes.

Every worker reads the whole capture itself (reading records is cheap, and nothing is
sent per packet), decodes each packet far enough to find its flow's key, and tracks and
describes only the flows of its shard (`flows.shard_of`: the same for both directions)
in a table of its own. Described connections come back to the parent pickled, in
batches, and are handed to `on_connection` as they arrive: in no particular order, with
ids that are unique only within a worker (callers number connections by (input,
first_frame)). Every other field is what one process would have found, except where a
worker's share of the flow table's bounds was hit (`FlowLimits` are divided among the
workers).
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import stat
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection as Pipe
from multiprocessing.connection import wait

from proxydiag.capture.flows import FlowLimits, FlowTable
from proxydiag.capture.sources import CaptureError, CaptureReader, open_capture
from proxydiag.facts.describe import describe, share_again
from proxydiag.facts.model import Connection, FlowTableBounds, InputSummary
from proxydiag.services import DEFAULT_TABLE, ServiceTable


@dataclass
class Progress:
    """Called now and then with (input index, bytes read, total bytes or None, connections seen)."""

    callback: Callable[[int, int, int | None, int], None]


AUTO_JOBS_FROM = 50 << 20  # bytes of captures: below this, starting workers costs more than they save
# Every worker reads and decodes every packet (about a fifth of one process's work) and the
# parent judges and writes every connection: past four workers neither side gets shorter.
AUTO_JOBS_MAX = 4
BATCH = 200  # connections per message from a worker (about 600 KB pickled)

_CONNECTIONS, _PROGRESS, _DONE, _FAILED = "connections", "progress", "done", "failed"


class ShardError(Exception):
    """A worker failed or died: the message is one line."""


@dataclass
class TrackSummary:
    """What tracking found besides the connections."""

    inputs: list[InputSummary] = field(default_factory=list)
    unsupported_linktypes: set[int] = field(default_factory=set)
    flow_table: FlowTableBounds = field(default_factory=FlowTableBounds)


def resolve_jobs(paths: Sequence[str], jobs: int | None) -> int:
    """How many workers to use; None is automatic: every usable CPU (at most
    AUTO_JOBS_MAX) once the captures are large. Anything not a regular file (standard
    input, a pipe) cannot be read by several workers: one process then."""
    sizes = [_regular_file_size(path) for path in paths]
    if any(size is None for size in sizes):
        return 1
    if jobs is None:
        return min(_usable_cpus(), AUTO_JOBS_MAX) if sum(size or 0 for size in sizes) >= AUTO_JOBS_FROM else 1
    return max(1, jobs)


def track_files(paths: Iterable[str], services: ServiceTable = DEFAULT_TABLE, progress: Progress | None = None,
                on_connection: Callable[[Connection], None] = lambda conn: None, jobs: int = 1,
                limits: FlowLimits | None = None) -> TrackSummary:
    """Read the captures, track and describe every connection, hand each to
    `on_connection`; with `jobs` > 1, in that many worker processes (the connections
    then come in no particular order, numbered per worker). Raises ShardError when a
    worker fails."""
    paths = list(paths)
    limits = limits or FlowLimits()
    if jobs <= 1:
        return _track(paths, services, limits, on_connection, _local_progress(progress))
    return _track_in_workers(paths, services, limits, on_connection, progress, jobs)


def worker_limits(limits: FlowLimits, jobs: int) -> FlowLimits:
    """Each worker's share of the flow table's bounds."""
    return replace(limits, max_open=max(1, limits.max_open // jobs),
                   max_buffered_bytes=max(1, limits.max_buffered_bytes // jobs))


# -- tracking, in this process or in a worker -------------------------------------------

ProgressReport = Callable[[int, CaptureReader, int], None]  # (input index, reader, connections so far)


def _track(paths: list[str], services: ServiceTable, limits: FlowLimits, on_connection: Callable[[Connection], None],
           report: ProgressReport | None, shard: tuple[int, int] = (0, 1)) -> TrackSummary:
    summary = TrackSummary()
    described = 0

    def finished(tracked) -> None:
        nonlocal described
        described += 1
        on_connection(describe(tracked, services))

    table = FlowTable(finished, limits, services=services)
    for index, path in enumerate(paths):
        try:
            reader = open_capture(path)
        except CaptureError as error:
            summary.inputs.append(InputSummary(path, None, [], 0, error=str(error)))
            continue
        with reader:
            tick = None if report is None else _ticker(report, index, reader, lambda: described)
            table.consume(index, reader, tick, shard)
        table.flush()
        info = reader.info
        summary.inputs.append(InputSummary(info.path, info.format, info.linktypes, info.packets, damaged=info.damaged))
    summary.unsupported_linktypes = table.unsupported_linktypes
    summary.flow_table = FlowTableBounds(table.evicted_half_open, table.evicted_idle, table.evicted_by_cap, table.dropped)
    return summary


def _ticker(report: ProgressReport, index: int, reader: CaptureReader, count: Callable[[], int]) -> Callable[[], None]:
    return lambda: report(index, reader, count())


def _local_progress(progress: Progress | None) -> ProgressReport | None:
    if progress is None:
        return None
    return lambda index, reader, described: progress.callback(index, reader.info.bytes_read, reader.info.size, described)


def _work(pipe: Pipe, paths: list[str], services: ServiceTable, limits: FlowLimits, shard: tuple[int, int],
          reports_progress: bool) -> None:
    """A worker's whole life: its shard's connections in batches, then its summary (or
    one line saying why it failed)."""
    batch: list[Connection] = []

    def send(kind: str, body: object) -> None:
        pipe.send_bytes(pickle.dumps((kind, body), protocol=pickle.HIGHEST_PROTOCOL))

    def collect(conn: Connection) -> None:
        batch.append(conn)
        if len(batch) >= BATCH:
            send(_CONNECTIONS, batch)
            batch.clear()

    def report(index: int, reader: CaptureReader, _described: int) -> None:
        send(_PROGRESS, (index, reader.info.bytes_read, reader.info.size))

    try:
        summary = _track(paths, services, limits, collect, report if reports_progress else None, shard)
        send(_CONNECTIONS, batch)
        send(_DONE, summary)
    except BaseException as error:  # noqa: B036 - whatever stops a worker is told to the parent in one line
        where = traceback.extract_tb(error.__traceback__)[-1] if error.__traceback__ else None
        at = f" at {os.path.basename(where.filename)}:{where.lineno}" if where else ""
        send(_FAILED, f"worker {shard[0] + 1} of {shard[1]} failed{at}: {type(error).__name__}: {error}")
    finally:
        pipe.close()


# -- the parent -------------------------------------------------------------------------

def _track_in_workers(paths: list[str], services: ServiceTable, limits: FlowLimits,
                      on_connection: Callable[[Connection], None], progress: Progress | None, jobs: int) -> TrackSummary:
    # fork: the workers start at once, with what the parent has loaded (spawn where there is no fork)
    forks = "fork" in multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork") if forks else multiprocessing.get_context("spawn")
    share = worker_limits(limits, jobs)
    workers: dict[Pipe, tuple[int, multiprocessing.process.BaseProcess]] = {}
    try:
        for index in range(jobs):
            receiver, sender = context.Pipe(duplex=False)
            process = context.Process(target=_work, name=f"proxydiag-shard-{index + 1}", daemon=True,
                                      args=(sender, paths, services, share, (index, jobs), index == 0 and progress is not None))
            process.start()
            sender.close()  # the worker holds the only writing end: its death is the pipe's end
            workers[receiver] = (index, process)
        summaries = _receive(workers, on_connection, progress, jobs)
    finally:
        for receiver, (_, worker) in workers.items():
            if worker.is_alive():
                worker.kill()
            worker.join()
            receiver.close()
    return merge(summaries)


def _receive(workers: dict[Pipe, tuple[int, multiprocessing.process.BaseProcess]],
             on_connection: Callable[[Connection], None], progress: Progress | None, jobs: int) -> list[TrackSummary]:
    summaries: list[TrackSummary | None] = [None] * jobs
    pending = set(workers)
    received = 0
    while pending:
        for receiver in wait(list(pending)):
            assert isinstance(receiver, Pipe)
            index, process = workers[receiver]
            try:
                kind, body = pickle.loads(receiver.recv_bytes())
            except (EOFError, OSError):
                process.join(5)
                raise ShardError(f"worker {index + 1} of {jobs} ended without finishing (exit code {process.exitcode})") from None
            if kind == _CONNECTIONS:
                for conn in body:
                    on_connection(share_again(conn))
                received += len(body)
            elif kind == _PROGRESS and progress is not None:
                input_index, done, total = body
                progress.callback(input_index, done, total, received)
            elif kind == _FAILED:
                raise ShardError(body)
            elif kind == _DONE:
                summaries[index] = body
                pending.discard(receiver)
    return [summary for summary in summaries if summary is not None]


def merge(summaries: list[TrackSummary]) -> TrackSummary:
    """One summary of the workers': each read every input, so the inputs are the first's."""
    bounds = [summary.flow_table for summary in summaries]
    return TrackSummary(
        inputs=summaries[0].inputs if summaries else [],
        unsupported_linktypes=set().union(*(summary.unsupported_linktypes for summary in summaries)),
        flow_table=FlowTableBounds(
            evicted_half_open=sum(bound.evicted_half_open for bound in bounds),
            evicted_idle=sum(bound.evicted_idle for bound in bounds),
            evicted_by_cap=sum(bound.evicted_by_cap for bound in bounds),
            dropped=sum(bound.dropped for bound in bounds),
        ),
    )


def _regular_file_size(path: str) -> int | None:
    if path == "-":
        return None
    try:
        status = os.stat(path)
    except OSError:
        return 0  # not there: its reader says so, once per worker as in one process
    return status.st_size if stat.S_ISREG(status.st_mode) else None


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
