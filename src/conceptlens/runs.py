"""A run folder: where one command writes, with one resume policy and one writer at a time.

The folder records its kind (capture, encoding-study, ...) and the spec it was started with: the
same spec resumes, another spec or another kind is refused (naming the differing fields), and an
exclusive lock (`fcntl.flock`, released by the kernel when the process dies) keeps a second
process out. DECISION: a folder with results but no record (written before records existed) is
adopted, but only by the kind whose files it holds (`SIGNATURES`); a stage's folder inside a study
records its kind but leaves the spec to the study.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from conceptlens.errors import ConceptLensError
from conceptlens.out_paths import check_output_folder
from conceptlens.storage import remove_stale_temporaries, write_json, write_text

KINDS = ("capture", "encoding-study", "intervention", "finetune", "comparison", "reproduce", "synthetic-train",
         "synthetic-analysis", "sweep", "sweep-cell", "transfer", "ladder")
RECORD = ".conceptlens-run.json"
LOCK = ".conceptlens.lock"
DONE = "DONE"
# what a folder of each kind holds at its top, for folders written before records existed: such a
# folder is adopted only by its own kind (a `finetune --resume` into an old `llm run` folder is refused)
SIGNATURES: dict[str, tuple[tuple[str, ...], ...]] = {
    "encoding-study": (("summary.json", "decodability.csv"), ("checkpoint_series.csv",)),
    "finetune": (("config.json", "before"), ("train_log.jsonl",), ("adapter",)),
    "synthetic-train": (("config.yaml", "checkpoints"),),
    "intervention": (("interventions.csv",),),
    "comparison": (("comparison.md",),),
    "reproduce": (("settings.json",), ("stages.json",)),
    "sweep": (("sweep.yaml",), ("sweep_status.json",)),
    "capture": (("manifest.json",),),
}
_held: dict[str, tuple[int, int]] = {}  # resolved folder -> (file descriptor, depth): re-entrant in one process


def spec_dict(spec: BaseModel | dict | None) -> dict | None:
    """A spec as plain JSON data (pydantic models dumped in JSON mode)."""
    if spec is None or isinstance(spec, dict):
        return None if spec is None else json.loads(json.dumps(spec, default=str))
    return json.loads(spec.model_dump_json())


def differing_fields(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted names of the fields where two JSON specs differ (`model.dtype`, `shots`, ...)."""
    if isinstance(old, dict) and isinstance(new, dict):
        names: list[str] = []
        for key in sorted(set(old) | set(new)):
            names += differing_fields(old.get(key), new.get(key), f"{prefix}{key}.")
        return names
    return [] if old == new else [prefix.rstrip(".") or "spec"]


def _empty_tree(folder: Path) -> bool:
    """True when `folder` holds no file at any depth (only empty folders)."""
    return all(p.is_dir() and not p.is_symlink() for p in folder.rglob("*"))


def looks_like(folder: Path) -> list[str]:
    """The kinds whose files a folder without a record holds at its top (see `SIGNATURES`)."""
    return [kind for kind, ways in SIGNATURES.items()
            if any(all((folder / name).exists() for name in names) for names in ways)]


def folder_done(folder: str | Path) -> bool:
    """True when the folder's work finished (its `DONE` marker, written last)."""
    return (Path(folder) / DONE).exists()


def mark_done(folder: str | Path) -> None:
    """Write the `DONE` marker, last of all (a rerun then skips this folder)."""
    write_text(Path(folder) / DONE, time.strftime("%Y-%m-%dT%H:%M:%S") + "\n")


class RunFolder:
    """`with RunFolder(out, "capture", spec):` -> checked, locked, recorded; released on exit.

    `legacy` names a file that held the spec before records existed (e.g. `settings.json`).
    """

    def __init__(self, path: str | Path, kind: str, spec: BaseModel | dict | None = None,
                 legacy: str | None = None):
        if kind not in KINDS:
            raise ValueError(f"unknown run-folder kind {kind!r}")
        self.path, self.kind, self.spec, self.legacy = Path(path), kind, spec_dict(spec), legacy
        self.spec_model = spec if isinstance(spec, BaseModel) else None

    # ---- the record -----------------------------------------------------------------------------
    def recorded(self) -> dict | None:
        """The folder's record {kind, spec, ...}, or None when it has none."""
        record_path = self.path / RECORD
        if record_path.exists():
            try:
                record = json.loads(record_path.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ConceptLensError(f"{record_path} is damaged ({exc}).",
                                       "delete that file to adopt the folder, or choose another `out`.") from exc
            if isinstance(record, dict):
                return record
        if self.legacy and (self.path / self.legacy).is_file():
            try:
                return {"kind": self.kind, "spec": json.loads((self.path / self.legacy).read_text(encoding="utf-8"))}
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ConceptLensError(f"{self.path / self.legacy} is damaged ({exc}).",
                                       "delete it (the run restarts its checks), or choose another `out`.") from exc
        return None

    def check(self) -> None:
        """Refuse, before any write, a path that is a file, a folder of another kind, or of another spec."""
        if self.path.exists() and not self.path.is_dir():
            raise ConceptLensError(f"{self.path} is a file, not a run folder.", "choose another `out`.")
        check_output_folder(self.path)  # under a file, not writable: refused before any work
        holder = self.holder()
        if holder is not None:
            raise ConceptLensError(f"{self.path} is being written by {holder}.",
                                   "wait until that process ends (or stop it), or choose another `out`.")
        record = self.recorded() if self.path.is_dir() else None
        if record is None:
            others = [kind for kind in looks_like(self.path) if kind != self.kind] if self.path.is_dir() else []
            if others and self.kind not in looks_like(self.path):
                raise ConceptLensError(f"{self.path} holds the results of a '{others[0]}' run; this command writes "
                                       f"'{self.kind}' folders and would overwrite them.",
                                       "choose another `out` for this command (each command writes its own folder).")
            return
        if record.get("kind") != self.kind:
            raise ConceptLensError(f"{self.path} is a '{record.get('kind')}' run folder; this command writes "
                                   f"'{self.kind}' folders.",
                                   "choose another `out` for this command (each command writes its own folder).")
        old = record.get("spec")
        if old is None or self.spec is None:
            return
        old = {**self._defaults(), **old} if isinstance(old, dict) else old  # fields added since the run began
        changed = differing_fields(old, self.spec)
        if changed:
            raise ConceptLensError(f"{self.path} holds a {self.kind} run with other settings (differs in {changed}).",
                                   f"resume with the same settings, choose another `out`, or delete {self.path} to start afresh.")

    def _defaults(self) -> dict:
        try:
            return spec_dict(type(self.spec_model)()) if self.spec_model is not None else {}
        except Exception:  # a spec with required fields has no defaults to fill in
            return {}

    # ---- the lock ---------------------------------------------------------------------------------
    def __enter__(self) -> "RunFolder":
        self.check()
        self._new_folders = [p for p in (self.path, *self.path.parents) if not os.path.lexists(p)]
        spec_files = (LOCK, RECORD) + ((self.legacy,) if self.legacy else ())
        self._created = [self.path / name for name in spec_files if not (self.path / name).exists()]
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock()  # a process that got here between our check and our lock is named by the lock
        try:
            self.check()  # again under the lock: another writer may have recorded meanwhile
            remove_stale_temporaries(self.path)  # what a killed writer of this folder left (older than a minute)
            record = self.recorded() or {}
            if not (self.path / RECORD).exists() or (record.get("spec") is None and self.spec is not None):
                write_json(self.path / RECORD, {"kind": self.kind, "spec": self.spec,
                                                "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(self, exc_type, *_) -> None:
        outermost = _held.get(str(self.path.resolve()), (None, 1))[1] == 1
        if exc_type is not None and outermost:
            self._roll_back()
        self._unlock()

    def _roll_back(self) -> None:
        """A command that failed before writing a result leaves no folder or file of its own behind.

        The record, the lock and the `legacy` spec file (e.g. settings.json) are no results: a folder
        holding only those (and empty folders) is removed, with the parents this run created."""
        spec_files = {LOCK, RECORD} | ({self.legacy} if self.legacy else set())
        if not self.path.is_dir() or any(p.name not in spec_files for p in self.path.iterdir()
                                         if not (p.is_dir() and not p.is_symlink() and _empty_tree(p))):
            return  # results were written: the record must stay, so a resume is checked against it
        for path in self._created[::-1]:
            path.unlink(missing_ok=True)
        for folder in self._new_folders:  # innermost first
            if folder.is_dir() and _empty_tree(folder):
                shutil.rmtree(folder)

    def holder(self) -> str | None:
        """Who holds the folder's lock ("pid 123 on host ..."), or None when no other process does."""
        import fcntl

        if str(self.path.resolve()) in _held or not (self.path / LOCK).is_file():
            return None
        fd = os.open(self.path / LOCK, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        except BlockingIOError:
            return os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "another process"
        finally:
            os.close(fd)

    def _lock(self) -> None:
        import fcntl

        key = str(self.path.resolve())
        if key in _held:
            fd, depth = _held[key]
            _held[key] = (fd, depth + 1)
            return
        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise ConceptLensError(f"{self.path} is being written by {holder}.",
                                   "wait until that process ends (or stop it), or choose another `out`.") from None
        os.ftruncate(fd, 0)
        command = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))[:300]
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%H:%M:%S')} "
                      f"({command})".encode(), 0)
        _held[key] = (fd, 1)

    def _unlock(self) -> None:
        key = str(self.path.resolve())
        fd, depth = _held.pop(key, (None, 0))
        if fd is None:
            return
        if depth > 1:
            _held[key] = (fd, depth - 1)
            return
        os.ftruncate(fd, 0)
        os.close(fd)  # closing the descriptor releases the flock

    @property
    def done(self) -> bool:
        return folder_done(self.path)

    def mark_done(self) -> None:
        mark_done(self.path)
