"""Entry point: `conceptlens COMMAND ...`; user errors print one message and exit with code 2."""

from __future__ import annotations

import errno
import sys

import typer

from conceptlens.cli import core, llm, reproduce, study, synthetic
from conceptlens.cli.common import console
from conceptlens.errors import ConceptLensError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="conceptlens: how transformers encode the latent concept of a few-shot prompt.")
core.register(app)
app.add_typer(synthetic.app, name="synthetic", help="Train small GPTs on in-context regression and watch concepts emerge.")
app.add_typer(llm.app, name="llm", help="Concept encoding, ICL accuracy, interventions and finetuning in pretrained LMs.")
reproduce.register(app)
study.register(app)


def main() -> None:
    try:
        app()
    except ConceptLensError as exc:
        _report(exc)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # atomic writes left every earlier result whole; say so instead of printing a traceback
        _report(ConceptLensError(f"the disk is full (writing {exc.filename or 'a result'}); earlier results are intact.",
                                 "free some space (or choose another --out), then rerun the same command to resume."))


def _report(exc: ConceptLensError) -> None:
    from rich.markup import escape  # messages quote shapes like [layers, N, d]: not rich markup

    from conceptlens.cli.flags import as_flags

    console.print(f"[bold red]error:[/] {escape(as_flags(exc.problem))}")
    if exc.fix:
        console.print(f"[bold]fix:[/] {escape(as_flags(exc.fix))}")
    sys.exit(2)


if __name__ == "__main__":
    main()
