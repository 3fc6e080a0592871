"""Live progress of a bench run (rich on stderr), or none at all (tests, ``--quiet``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class Ui(Protocol):
    """What the scenarios tell the person watching."""

    def note(self, text: str) -> None:
        """A line of news: a stack starting, a step's result."""

    def phase(self, label: str, total: int) -> Callable[[int], None]:
        """Start a progress bar of ``total`` deliveries; returns the update callback."""

    def done(self) -> None:
        """The current progress bar is finished."""


class QuietUi:
    """Shows nothing."""

    def note(self, text: str) -> None:
        pass

    def phase(self, label: str, total: int) -> Callable[[int], None]:
        return lambda _: None

    def done(self) -> None:
        pass


class RichUi:
    """Notes as lines, phases as a progress bar of deliveries received, on stderr."""

    def __init__(self) -> None:
        self.console = Console(stderr=True, highlight=False)
        self._progress: Progress | None = None

    def note(self, text: str) -> None:
        self.console.print(text)

    def phase(self, label: str, total: int) -> Callable[[int], None]:
        self.done()
        progress = Progress(
            TextColumn("  {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("deliveries"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        task = progress.add_task(label, total=max(total, 1))
        progress.start()
        self._progress = progress

        def update(received: int) -> None:
            progress.update(task, completed=min(received, total))

        return update

    def done(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
