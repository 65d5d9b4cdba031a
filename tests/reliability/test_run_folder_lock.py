"""One writer per run folder: a second process on a folder being written gets one clear error that
names the holder (its pid), exit code 2 from the CLI, and the holder's files stay untouched."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conceptlens.errors import ConceptLensError
from conceptlens.runs import RunFolder

HOLD = textwrap.dedent("""
    import sys
    from conceptlens.runs import RunFolder
    with RunFolder(sys.argv[1], sys.argv[2], {"holder": True}):
        print("locked", flush=True)
        sys.stdin.readline()  # hold the lock until the test says so
""")


class Holder:
    """A child process holding the lock of `folder` until `release()`."""

    def __init__(self, folder: Path, kind: str):
        import os

        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
        self.proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), kind], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)
        assert self.proc.stdout.readline().strip() == "locked"

    def release(self) -> None:
        self.proc.communicate("go\n", timeout=60)
        assert self.proc.returncode == 0


def test_a_second_process_gets_an_error_naming_the_holder(tmp_path):
    folder = tmp_path / "run"
    holder = Holder(folder, "encoding-study")
    try:
        with pytest.raises(ConceptLensError, match=rf"is being written by pid {holder.proc.pid} ") as info:
            with RunFolder(folder, "encoding-study", {"holder": True}):
                raise AssertionError("must not run while another process writes")
        assert "wait until that process ends" in info.value.fix
        with pytest.raises(ConceptLensError, match=f"pid {holder.proc.pid}"):  # the check alone says so too
            RunFolder(folder, "encoding-study", {"other": 1}).check()
    finally:
        holder.release()
    with RunFolder(folder, "encoding-study", {"holder": True}):  # released when the holder ended
        pass


def test_a_killed_holder_releases_its_lock(tmp_path):
    folder = tmp_path / "run"
    holder = Holder(folder, "sweep")
    holder.proc.kill()
    holder.proc.wait(timeout=60)
    with RunFolder(folder, "sweep", {"holder": True}):
        pass


def test_capture_onto_a_folder_being_written_fails_cleanly(cli, tiny_lm: Path, tmp_path: Path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("1 2 3 ->\n4 5 ->\n")
    out = tmp_path / "acts.safetensors"
    holder = Holder(Path(str(out) + ".parts"), "capture")
    try:
        result = cli("capture", "--model", tiny_lm, "--prompts", prompts, "--out", out)
    finally:
        holder.release()
    assert result.code == 2, result.stderr
    assert f"pid {holder.proc.pid}" in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.count("error:") == 1 and result.stderr.count("fix:") == 1
    assert "another --out" in result.stderr  # the library's parameter, printed as the CLI's flag
    assert not out.exists()
