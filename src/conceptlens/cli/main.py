"""Entry point: `conceptlens COMMAND ...`; user errors print one message and exit with code 2.

DECISION (threads): torch's default is one thread per core; when another process holds a core,
a thread that waits for it stalls every parallel region, so `--threads` (default: half the usable
cores, at least 1; measurements in RELIABILITY.md) sets it once for every command.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from typing import Optional

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

# options whose value is a path: an empty value would silently mean the current folder
PATH_FLAGS = ("--out", "--prompts", "--from-run", "--before-run", "--config", "--model", "--family")


@app.callback()
def options(threads: Optional[int] = typer.Option(
        None, "--threads", min=1, help="CPU threads of torch and BLAS (default: half the cores, at least 1); "
                                       "give it before the command: conceptlens --threads 1 capture ...")) -> None:
    """conceptlens: how transformers encode the latent concept of a few-shot prompt."""
    from conceptlens.cli.threads import apply_threads

    apply_threads(threads)


@app.command("repair-log", help="Keep every good line of a damaged JSONL log (the damaged ones go to FILE.damaged).")
def repair_log(path: Path = typer.Argument(..., help="a .jsonl log, e.g. RUN/metrics.jsonl")) -> None:
    from conceptlens.reading import repair_jsonl

    kept, moved = repair_jsonl(path)
    console.print(f"{path}: kept {kept} line(s), moved {moved} damaged line(s) to {path}.damaged")


def _escape_help(typer_app: typer.Typer, seen: set[int] | None = None) -> None:
    """Help texts quote shapes such as [layers, N, d]; rich would read them as markup and drop them."""
    import inspect

    from rich.markup import escape
    from typer.models import ParameterInfo

    seen = set() if seen is None else seen
    for command in typer_app.registered_commands:
        text = command.help or inspect.getdoc(command.callback)
        if text and "[" in text:
            command.help = escape(text)
        for parameter in inspect.signature(command.callback).parameters.values():
            info = parameter.default
            if isinstance(info, ParameterInfo) and info.help and id(info) not in seen:
                seen.add(id(info))
                info.help = escape(info.help)
    for group in typer_app.registered_groups:
        _escape_help(group.typer_instance, seen)


_escape_help(app)


def _check_argv(argv: list[str]) -> None:
    """`--out ""` (an unset shell variable) would write into the current folder: refuse it."""
    for i, arg in enumerate(argv):
        flag, eq, value = arg.partition("=")
        if flag in PATH_FLAGS and ((eq and value.strip() == "") or
                                   (not eq and i + 1 < len(argv) and argv[i + 1].strip() == "")):
            raise ConceptLensError(f"{flag} is empty (an unset shell variable?).", f"give {flag} a path.")


def main() -> None:
    try:
        _check_argv(sys.argv[1:])
        app()
    except ConceptLensError as exc:
        _report(exc)
    except OSError as exc:
        if os.environ.get("CONCEPTLENS_TRACEBACK"):
            raise
        _report(_os_error(exc))


def _os_error(exc: OSError) -> ConceptLensError:
    """The last resort: any OSError the checks before it missed, as one error and one fix."""
    where = exc.filename or "a file"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):  # atomic writes left every earlier result whole
        return ConceptLensError(f"the disk is full (writing {where}); earlier results are intact.",
                                "free some space (or choose another --out), then rerun the same command to resume.")
    reason = exc.strerror or type(exc).__name__
    target = f"{where}" + (f" -> {exc.filename2}" if exc.filename2 else "")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "choose another --out (a folder you may write), or change the permissions of that path."
    elif exc.errno in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR, errno.EBUSY, errno.ENOENT):
        fix = "check the path (a file where a folder is needed, or the other way round), or choose another --out."
    else:
        fix = "check the path and the disk, then rerun the same command (finished results are kept); " \
              "CONCEPTLENS_TRACEBACK=1 shows where it failed."
    return ConceptLensError(f"{reason} ({target}).", fix)


def _report(exc: ConceptLensError) -> None:
    from rich.markup import escape  # messages quote shapes like [layers, N, d]: not rich markup

    from conceptlens.cli.flags import as_flags

    console.print(f"[bold red]error:[/] {escape(as_flags(exc.problem))}")
    if exc.fix:
        console.print(f"[bold]fix:[/] {escape(as_flags(exc.fix))}")
    sys.exit(2)


if __name__ == "__main__":
    main()
