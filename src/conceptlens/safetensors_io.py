"""Tensors on disk as safetensors: a JSON header, then raw little-endian bytes, never pickle.

Files are written atomically (a temporary renamed into place, see `conceptlens.storage`) with
sorted metadata, so the same tensors give the same bytes; one tensor too large for memory is
streamed chunk by chunk (`StreamingSafetensorsWriter`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from conceptlens.errors import ConceptLensError
from conceptlens.storage import atomic_path, temporary_beside, verify_checksum, write_checksum


def _sort_metadata(path: Path) -> None:
    """Rewrite a safetensors header with its `__metadata__` keys sorted, in place.

    safetensors writes the metadata map in hash order, which changes from process to process, so
    the same tensors and metadata gave different bytes (and checksums). Sorting keeps the header's
    length (same items, same compact JSON), so only the header bytes are rewritten.
    """
    import struct

    with open(path, "r+b") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
        if len(text) <= length:  # always, unless the writer's escaping differs from Python's
            handle.seek(8)
            handle.write(text + b" " * (length - len(text)))


def save_tensors(path: str | Path, tensors: dict, metadata: dict[str, str] | None = None,
                 checksum: bool = False) -> None:
    """Save torch tensors as safetensors, atomically (and with a checksum sidecar if asked)."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
        if metadata:
            _sort_metadata(tmp)
    if checksum:
        write_checksum(path)


def load_tensors(path: str | Path, verify: bool = False) -> dict:
    """Load a safetensors file as a dict of torch tensors (no pickle is ever involved)."""
    from safetensors.torch import load_file

    path = Path(path)
    if verify:
        verify_checksum(path)
    if not path.exists():
        raise ConceptLensError(f"{path} does not exist.", "check the path.")
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for bad headers
        raise ConceptLensError(f"{path} is not a readable safetensors file ({exc}).",
                               "pass a file written by conceptlens or safetensors.save_file.") from exc


def safetensors_metadata(path: str | Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata() or {})


_DTYPES = {"float32": ("F32", 4), "float16": ("F16", 2), "bfloat16": ("BF16", 2), "float64": ("F64", 8),
           "int64": ("I64", 8), "int32": ("I32", 4)}


class StreamingSafetensorsWriter:
    """Write one large tensor into a safetensors file chunk by chunk along its first axis.

    Written by hand because `safetensors` serialises only tensors already in memory; the file
    format (8-byte header length, JSON header, raw little-endian bytes) is simple and stable.
    Use: `w = StreamingSafetensorsWriter(path, "activations", shape, "float32", extra={...})`,
    then `w.write(chunk)` until the tensor is complete, then `w.close()` (or `w.abort()`).
    """

    def __init__(self, path: str | Path, name: str, shape: tuple[int, ...], dtype: str,
                 extra: dict | None = None, metadata: dict[str, str] | None = None):
        code, width = _DTYPES[dtype]
        self.path = Path(path)
        self.expected = int(np.prod(shape)) * width
        self.written = 0
        header: dict[str, Any] = {name: {"dtype": code, "shape": [int(s) for s in shape],
                                         "data_offsets": [0, self.expected]}}
        offset = self.expected
        self._extra = []
        for key, tensor in (extra or {}).items():
            array = tensor.detach().contiguous().cpu().numpy()
            tcode, twidth = _DTYPES[str(array.dtype)]
            header[key] = {"dtype": tcode, "shape": list(array.shape),
                           "data_offsets": [offset, offset + array.size * twidth]}
            offset += array.size * twidth
            self._extra.append(array)
        if metadata:
            header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
        blob = json.dumps(header, separators=(",", ":")).encode()
        blob += b" " * ((8 - len(blob) % 8) % 8)
        fd, self._tmp = temporary_beside(self.path)
        self._handle = os.fdopen(fd, "wb")
        self._handle.write(len(blob).to_bytes(8, "little"))
        self._handle.write(blob)

    def write(self, chunk: Any) -> None:
        array = chunk.detach().contiguous().cpu().numpy() if hasattr(chunk, "detach") else np.ascontiguousarray(chunk)
        data = array.tobytes()
        self._handle.write(data)
        self.written += len(data)

    def close(self) -> None:
        if self.written != self.expected:
            self.abort()
            raise RuntimeError(f"streamed {self.written} bytes, expected {self.expected}")
        for array in self._extra:
            self._handle.write(array.tobytes())
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        self._handle.close()
        self._tmp.unlink(missing_ok=True)
