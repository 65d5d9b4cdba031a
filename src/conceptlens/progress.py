"""Logging and progress for library and CLI alike: one rich console on stderr, one bar style.

Every stage that takes more than a few seconds shows a bar with the count, the elapsed time and an
estimate of the time left. DECISION: messages go to stderr, so a command's stdout stays clean for pipes.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


def progress_bar(transient: bool = False) -> Progress:
    """A rich progress bar (count, elapsed, estimate left); tasks take an `info` field."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=console, transient=transient)


def log(message: str) -> None:
    """One line of news for the researcher (rich markup allowed)."""
    console.print(message)
