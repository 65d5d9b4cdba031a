"""`conceptlens reproduce`, `report` and `sweep`: the whole study, its report, runs beyond one machine."""

import typer


def register(app: typer.Typer) -> None:
    pass
