"""A progress bar on stderr for captures that take more than a moment, only when
stderr is a terminal: bytes read of the file, connections seen."""

from __future__ import annotations

import sys
import time

from typing import TYPE_CHECKING

from proxydiag.pipeline.shards import Progress as AnalysisProgress

if TYPE_CHECKING:  # imported when a bar is shown: most runs never show one
    from rich.progress import Progress, TaskID

DELAY = 0.7  # seconds before a bar is worth showing


class ProgressBar:
    def __init__(self) -> None:
        self._started = time.monotonic()
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._enabled = sys.stderr.isatty()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()

    def reporter(self) -> AnalysisProgress | None:
        return AnalysisProgress(self._update) if self._enabled else None

    def _update(self, index: int, done: int, total: int | None, connections: int) -> None:
        if self._progress is None:
            if time.monotonic() - self._started < DELAY:
                return
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("reading capture {task.fields[input]}"), BarColumn(), DownloadColumn(),
                TextColumn("{task.fields[connections]} connections"), TimeRemainingColumn(),
                console=Console(stderr=True), transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task("read", total=total, input=index + 1, connections=0)
        if self._task is not None:
            self._progress.update(self._task, completed=done, total=total, input=index + 1, connections=connections)
