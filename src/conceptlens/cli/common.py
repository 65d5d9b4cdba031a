"""What every command shares: the rich console, error reporting (exit code 2), progress bars."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


def progress_bar(transient: bool = False) -> Progress:
    """A rich progress bar for anything that takes more than a few seconds."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=console, transient=transient)


def parse_int_list(text: str | None) -> list[int] | None:
    """'1,4,10' -> [1, 4, 10]; None or 'all' -> None."""
    from conceptlens.errors import ConceptLensError

    if text is None or text.strip().lower() == "all":
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise ConceptLensError(f"'{text}' is not a comma-separated list of integers.", "write e.g. 1,4,10.") from exc
