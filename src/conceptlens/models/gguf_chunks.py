"""GGUF files that ship as untrusted bytes: joined from chunk packages, pinned by SHA-256, header checked.

A third-party upload can change under the same name, so the joined file must hash to the digest
pinned in our code before anything reads it, and its GGUF header must name the architecture, depth
and model we expect before it is converted. DECISION: the digest is of the joined file (one pin per
model, checked while joining, no second pass over 1 GB); a mismatch leaves nothing in the cache.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from conceptlens.errors import ConceptLensError
from conceptlens.storage import atomic_path


@dataclass(frozen=True)
class GGUFHeader:
    """What a GGUF file must declare: `general.architecture`, `{architecture}.block_count`, `general.name`."""

    architecture: str
    block_count: int
    name: str


def join_chunks(chunks: list[Path], target: Path, expected_sha256: str, reinstall: str) -> Path:
    """Concatenate `chunks` into `target` (a temporary beside it, renamed only once the digest matches)."""
    digest = hashlib.sha256()
    with atomic_path(target) as staging:
        with staging.open("wb") as out:
            for chunk in chunks:
                with chunk.open("rb") as source:
                    while block := source.read(1 << 22):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != expected_sha256:
            raise ConceptLensError(
                f"the {len(chunks)} chunks joined into {target.name} have SHA-256 {digest.hexdigest()}, not the pinned "
                f"{expected_sha256}: the upload changed or a chunk is damaged, so it is refused.",
                f"reinstall the pinned versions: {reinstall} (if they still differ, the upload itself changed: "
                "do not use it).")
    return target


def _field(reader, key: str):
    field = reader.get_field(key)
    return None if field is None else field.contents()


def read_header(path: Path) -> GGUFHeader:
    """The three header fields of a GGUF file (memory-mapped: no tensor is read)."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
    except (ValueError, OSError, IndexError) as exc:  # not GGUF, or truncated
        raise ConceptLensError(f"{path} is not a readable GGUF file ({exc}).",
                               "delete it and reinstall the model's packages so it is joined again.") from exc
    architecture = str(_field(reader, "general.architecture"))
    blocks = _field(reader, f"{architecture}.block_count")
    return GGUFHeader(architecture, -1 if blocks is None else int(blocks), str(_field(reader, "general.name")))


def check_header(path: Path, expected: GGUFHeader) -> None:
    """Refuse a GGUF whose header is not the model we pinned (before any conversion reads its tensors)."""
    found = read_header(path)
    if found != expected:
        raise ConceptLensError(f"{path.name} declares {found}, not the expected {expected}.",
                               f"delete {path} and reinstall the model's packages at their pinned versions.")
