"""Atomic writes leave the old file on failure; checksums catch altered files; tables and tensors round-trip."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from conceptlens.errors import ConceptLensError
from conceptlens.safetensors_io import StreamingSafetensorsWriter, load_tensors, safetensors_metadata, save_tensors
from conceptlens.storage import append_jsonl, atomic_path, read_jsonl, verify_checksum, write_json, write_table, write_text


def test_atomic_path_keeps_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "result.json"
    write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half written")
            raise RuntimeError("killed")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]  # no temporary file left


def test_write_json_numpy_values_and_nested_folders(tmp_path):
    target = tmp_path / "a" / "b" / "x.json"
    write_json(target, {"i": np.int64(3), "f": np.float32(0.5), "a": np.arange(3), "p": tmp_path})
    assert json.loads(target.read_text()) == {"i": 3, "f": 0.5, "a": [0, 1, 2], "p": str(tmp_path)}
    with pytest.raises(TypeError):
        write_json(tmp_path / "y.json", {"bad": object()})
    assert not (tmp_path / "y.json").exists()


def test_jsonl_ignores_a_torn_last_line_only(tmp_path):
    path = tmp_path / "log.jsonl"
    append_jsonl(path, {"step": 1})
    append_jsonl(path, {"step": 2})
    with open(path, "a") as handle:
        handle.write('{"step": 3, "lo')
    assert read_jsonl(path) == [{"step": 1}, {"step": 2}]
    path.write_text('{"step": 1}\n{broken\n{"step": 3}\n')
    with pytest.raises(ConceptLensError, match="line 2"):
        read_jsonl(path)
    assert read_jsonl(tmp_path / "missing.jsonl") == []


def test_write_table_csv_and_parquet(tmp_path):
    frame = pd.DataFrame({"layer": [0, 1], "concept": ["AND", "OR"], "td": [0.5, 0.75]})
    write_table(tmp_path / "td.csv", frame)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "td.csv"), frame)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "td.parquet"), frame)


def test_tensors_round_trip_and_checksum(tmp_path):
    path = tmp_path / "t.safetensors"
    tensors = {"a": torch.randn(3, 4), "b": torch.arange(5)}
    save_tensors(path, tensors, metadata={"who": "test"}, checksum=True)
    loaded = load_tensors(path, verify=True)
    assert torch.equal(loaded["a"], tensors["a"]) and torch.equal(loaded["b"], tensors["b"])
    assert safetensors_metadata(path) == {"who": "test"}
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ConceptLensError, match="corrupt"):
        load_tensors(path, verify=True)
    (tmp_path / "t.safetensors.sha256").unlink()
    with pytest.raises(ConceptLensError, match="no checksum"):
        verify_checksum(path)
    with pytest.raises(ConceptLensError, match="missing"):
        verify_checksum(tmp_path / "nothing.safetensors")


def test_load_tensors_bad_files(tmp_path):
    with pytest.raises(ConceptLensError, match="does not exist"):
        load_tensors(tmp_path / "nope.safetensors")
    write_text(tmp_path / "junk.safetensors", "not a tensor file")
    with pytest.raises(ConceptLensError, match="not a readable safetensors"):
        load_tensors(tmp_path / "junk.safetensors")


def test_streaming_writer_equals_save_file(tmp_path):
    full = torch.randn(3, 7, 5)
    writer = StreamingSafetensorsWriter(tmp_path / "s.safetensors", "activations", (3, 7, 5), "float32",
                                        extra={"layers": torch.tensor([0, 4, 8])}, metadata={"k": 1})
    for layer in full:
        writer.write(layer)
    writer.close()
    loaded = load_tensors(tmp_path / "s.safetensors")
    assert torch.equal(loaded["activations"], full)
    assert loaded["layers"].tolist() == [0, 4, 8]
    assert safetensors_metadata(tmp_path / "s.safetensors") == {"k": "1"}


def test_streaming_writer_refuses_an_incomplete_tensor(tmp_path):
    writer = StreamingSafetensorsWriter(tmp_path / "s.safetensors", "x", (2, 3), "float32")
    writer.write(torch.zeros(1, 3))
    with pytest.raises(RuntimeError, match="expected"):
        writer.close()
    assert list(tmp_path.iterdir()) == []


def test_written_files_have_the_mode_of_ordinary_files(tmp_path):
    """mkstemp makes owner-only files; both atomic writers give results the umask's ordinary mode."""
    import os

    write_text(tmp_path / "a.txt", "x")
    writer = StreamingSafetensorsWriter(tmp_path / "s.safetensors", "x", (1,), "float32")
    writer.write(torch.zeros(1))
    writer.close()
    mask = os.umask(0)
    os.umask(mask)
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert modes == {"a.txt": 0o666 & ~mask, "s.safetensors": 0o666 & ~mask} and mask & 0o066 != 0o066


@pytest.mark.parametrize("call", ["expand_user", "revision_label", "user_family", "resolve_source"])
def test_an_unknown_user_in_a_path_is_one_clear_error(call):
    """`~nosuchuser/...` makes `Path.expanduser` raise RuntimeError; every path reader says so plainly."""
    from conceptlens.llm.encoding.series import revision_label
    from conceptlens.models.loader import resolve_source
    from conceptlens.storage import expand_user
    from conceptlens.tasks.user_family import user_family

    readers = {"expand_user": expand_user, "revision_label": revision_label, "user_family": user_family,
               "resolve_source": resolve_source}
    with pytest.raises(ConceptLensError, match="cannot expand '~conceptlens_no_such_user/x'"):
        readers[call]("~conceptlens_no_such_user/x")


def test_the_same_tensors_and_metadata_give_the_same_bytes_in_every_process(tmp_path):
    """safetensors writes metadata in hash order (it changed between processes); we sort it."""
    import subprocess
    import sys

    code = ("import sys, torch; from conceptlens.safetensors_io import save_tensors; "
            "save_tensors(sys.argv[1], {'b': torch.arange(3.0), 'a': torch.ones(2, 2)}, "
            "metadata={k: k * 3 for k in 'zyxwvutsrqponmlk'}, checksum=True)")
    for i in range(4):
        subprocess.run([sys.executable, "-c", code, str(tmp_path / f"{i}.safetensors")], check=True)
    assert len({(tmp_path / f"{i}.safetensors").read_bytes() for i in range(4)}) == 1
    loaded = load_tensors(tmp_path / "0.safetensors", verify=True)
    assert torch.equal(loaded["b"], torch.arange(3.0)) and torch.equal(loaded["a"], torch.ones(2, 2))
    assert safetensors_metadata(tmp_path / "0.safetensors")["q"] == "qqq"
