"""Reading the text files a user hands in (prompts, labels, YAML): one decoding, one line rule.

Editors on Windows start UTF-8 files with a byte-order mark, and Python's `str.splitlines` ends a
line at eleven characters (U+2028, U+2029, form feed, NEL, ...), so a prompt that holds one of them
silently became several prompts and a BOM became three extra tokens of the first prompt.
DECISION: the BOM is removed; a line ends only at `\\n` (a `\\r` right before it is dropped, so
`\\r\\n` files read the same); every other character stays inside its line.
"""

from __future__ import annotations

from pathlib import Path

from conceptlens.errors import ConceptLensError


def read_user_text(path: str | Path, what: str = "file") -> str:
    """The text of a user's file, decoded as UTF-8 with an optional BOM removed.

    `what` names the file in errors ("prompts file", "labels file"); every failure is one
    `ConceptLensError` naming the path: missing, a folder, unreadable, or not UTF-8.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise ConceptLensError(f"{what} {path} does not exist.", "check the path.") from exc
    except IsADirectoryError as exc:
        raise ConceptLensError(f"{what} {path} is a folder, not a file.", "give the path of the file itself.") from exc
    except OSError as exc:
        raise ConceptLensError(f"cannot read {what} {path} ({exc.strerror or exc}).",
                               "check the path and the file's permissions.") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConceptLensError(f"{what} {path} is not UTF-8 text (byte {exc.start} cannot be decoded).",
                               f"re-save {path.name} as UTF-8.") from exc


def split_lines(text: str) -> list[str]:
    """`text` cut at `\\n` and `\\r\\n` only; a final line end adds no empty last line."""
    lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def read_user_lines(path: str | Path, what: str = "file") -> list[str]:
    """The non-blank lines of a user's text file (see `split_lines`), each kept exactly as written."""
    return [line for line in split_lines(read_user_text(path, what)) if line.strip()]
