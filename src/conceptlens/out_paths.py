"""Where results may go: one check of an output path for every command, before any work.

A command's `out` is refused when nothing could be written there (a file where a folder is needed,
a folder where a file is needed, a path under a file, a folder that is not writable) or when it is
one of the command's inputs (the result would replace it). DECISION: the checks look only at the
path and permissions; a full disk is still found by the atomic writes, which keep earlier results.
"""

from __future__ import annotations

import os
from pathlib import Path

from conceptlens.errors import ConceptLensError


def _nearest_existing(path: Path) -> Path:
    """`path` itself, or its closest ancestor that exists (as a file or a folder)."""
    while not os.path.lexists(path) and path.parent != path:
        path = path.parent
    return path


def folder_problem(folder: str | Path) -> str | None:
    """Why files cannot be written in `folder` (created when missing), or None when they can."""
    folder = Path(folder)
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        return (f"{existing} is a file, not a folder" if existing == folder
                else f"{existing} is a file, so {folder} cannot be created under it")
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def check_output_file(path: str | Path, inputs: tuple = (), name: str = "out") -> Path:
    """Refuse, before any work, an output file path no result could be written to, or one that is an input.

    Empty (".") or a folder, under a file, in a folder that is not writable, or the same file as one
    of `inputs` (writing would replace the input): one `ConceptLensError` naming `name`.
    """
    path = Path(path)
    if str(path) in ("", ".") or path.name in ("", ".", ".."):
        raise ConceptLensError(f"`{name}` is empty or a folder ('{path}'); a file path is needed.",
                               f"give a file path, e.g. `{name}` result.json.")
    if path.is_dir():
        raise ConceptLensError(f"`{name}` {path} is a folder; a file path is needed.",
                               f"give a file path, e.g. `{name}` {path / 'result.json'}.")
    for source in inputs:
        if source is not None and Path(source).exists() and path.exists() and _same_file(path, Path(source)):
            raise ConceptLensError(f"`{name}` {path} is also an input of this command; writing the result "
                                   "would replace it.",
                                   f"choose another `{name}`, e.g. {path.with_name('result.json')}.")
    problem = folder_problem(path.parent)
    if problem:
        raise ConceptLensError(f"cannot write `{name}` {path}: {problem}.", f"choose another `{name}`.")
    return path


def check_output_folder(path: str | Path, inputs: tuple = (), name: str = "out") -> Path:
    """Refuse, before any work, a run-folder path that is a file, under a file, not writable, or an input."""
    path = Path(path)
    if os.path.lexists(path) and not path.is_dir():
        raise ConceptLensError(f"`{name}` {path} is a file, not a folder.", f"choose another `{name}` (a folder).")
    for source in inputs:
        if source is not None and Path(source).exists() and path.exists() and _same_file(path, Path(source)):
            raise ConceptLensError(f"`{name}` {path} is also an input of this command; results would mix with it.",
                                   f"choose another `{name}`.")
    problem = folder_problem(path)
    if problem:
        raise ConceptLensError(f"cannot write in `{name}` {path}: {problem}.", f"choose another `{name}`.")
    return path
