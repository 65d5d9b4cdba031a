"""Files that are never half-written: atomic writes, checksums, tidy tables, JSON logs.

Everything the toolkit writes goes to a temporary file in the destination folder and is renamed
into place, so a kill or a full disk leaves the previous result intact. Checksums (sha256 in a
`<file>.sha256` sidecar) let a resumed job detect a truncated or altered shard or checkpoint.
Tensors go through the same writes in `conceptlens.safetensors_io`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from conceptlens.errors import ConceptLensError
from conceptlens.out_paths import folder_problem


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _umask_mode()


def expand_user(path: str | Path, fix: str = "write the full path.") -> Path:
    """`Path(path).expanduser()`, with one clear error for "~nosuchuser/..." instead of a RuntimeError."""
    try:
        return Path(path).expanduser()
    except RuntimeError as exc:
        raise ConceptLensError(f"cannot expand '{path}' ({exc}).", fix) from exc


def temporary_beside(path: Path) -> tuple[int, Path]:
    """A new hidden temporary file in `path`'s folder (made if missing), open as a descriptor, with
    the mode of an ordinary file (mkstemp makes it owner-only); `remove_stale_temporaries` knows its name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, _FILE_MODE)
    return fd, Path(tmp)


def _fsync(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it onto `path`, else delete it."""
    path = Path(path)
    _check_destination(path)
    fd, tmp_path = temporary_beside(path)
    os.close(fd)
    try:
        yield tmp_path
        _fsync(tmp_path)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _check_destination(path: Path) -> None:
    """One error naming the path, not an OSError traceback, when `path` cannot become a file."""
    if path.name in ("", ".", "..") or path.is_dir():
        raise ConceptLensError(f"cannot write {path}: it is a folder, and a file is needed there.",
                               "choose another `out`, or move that folder away.")
    problem = folder_problem(path.parent)
    if problem:
        raise ConceptLensError(f"cannot write {path}: {problem}.", "choose another `out`.")


@contextlib.contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Yield a staging folder beside `path`; on success it replaces `path` whole, else it is removed."""
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=STAGING_SUFFIX, dir=path.parent))
    try:
        yield staging
        if path.exists():
            shutil.rmtree(path)
        os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


STAGING_SUFFIX = ".staging"
_STALE_FILE = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")  # atomic_path's temporaries
_STALE_FOLDER = re.compile(r"^\..+\.[a-z0-9_]{8}\.staging$|^\.adapter\.[a-z0-9_]{8}$")  # atomic_folder's (and older)


def remove_stale_temporaries(folder: str | Path, older_than_s: float = 60.0, recursive: bool = True) -> list[Path]:
    """Delete what a killed writer left in `folder` (and below): `atomic_path` / `atomic_folder` temporaries.

    Call it when a run resumes; nothing reads these. Only those older than `older_than_s` go, so a
    write in flight from another process (an `analyze` of the same run) is left alone; hidden
    folders that are not staging folders (.git, .venv) are not entered.
    """
    import shutil

    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    cutoff = time.time() - older_than_s
    for root, dirs, files in os.walk(folder):
        for name in files:
            path = Path(root) / name
            if _STALE_FILE.match(name) and path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
                removed.append(path)
        for name in list(dirs):
            path = Path(root) / name
            if _STALE_FOLDER.match(name):
                if path.stat().st_mtime < cutoff:
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path)
                dirs.remove(name)
            elif name.startswith(".") or not recursive:
                dirs.remove(name)
    return removed


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj)}")


def append_jsonl(path: str | Path, record: dict) -> None:
    """Append one JSON line and fsync it (metrics logs; a torn last line is dropped on read)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, default=_json_default) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_jsonl(path: str | Path) -> list[dict]:
    """Read a JSONL file, ignoring a torn (partially written) last line."""
    records = []
    path = Path(path)
    if not path.exists():
        return records
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise ConceptLensError(f"{path} line {i + 1} is not valid JSON (a damaged line inside the log).",
                                   f"run: conceptlens repair-log {path} (keeps every good line, moves the damaged "
                                   f"ones to {path.name}{DAMAGED}), then rerun the same command.") from None
    return records


DAMAGED = ".damaged"  # `conceptlens.reading.repair_jsonl` moves damaged lines there


def write_table(path: str | Path, frame: "Any") -> None:
    """Write a pandas DataFrame as CSV, and as Parquet beside it (same stem).

    Both are written to temporaries first and renamed only when both are whole, so a failed write
    leaves the previous pair, never a new CSV beside an old Parquet.
    """
    path = Path(path)
    with atomic_path(path.with_suffix(".csv")) as csv_tmp, atomic_path(path.with_suffix(".parquet")) as parquet_tmp:
        frame.to_csv(csv_tmp, index=False)
        _fsync(csv_tmp)  # a late write error surfaces here, before the Parquet is renamed
        frame.to_parquet(parquet_tmp, index=False)


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_checksum(path: str | Path) -> None:
    write_text(Path(str(path) + ".sha256"), sha256_file(path) + "\n")


def verify_checksum(path: str | Path) -> None:
    """Raise if `path` is missing, or differs from its `.sha256` sidecar (truncated or altered)."""
    path = Path(path)
    sidecar = Path(str(path) + ".sha256")
    if not path.exists():
        raise ConceptLensError(f"{path} is missing.", "rerun without resume=True to start afresh.")
    if not sidecar.exists():
        raise ConceptLensError(f"{path} has no checksum file {sidecar.name}: it may be incomplete.",
                               f"delete {path} and rerun with resume=True.")
    expected = sidecar.read_text().strip()
    if sha256_file(path) != expected:
        raise ConceptLensError(f"{path} is corrupt (its sha256 differs from {sidecar.name}).",
                               f"delete {path} and its .sha256 file, then rerun with resume=True.")
