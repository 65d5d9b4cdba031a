"""Issue 19, classes 3, 4, 5, 6, 7 and 9: data loss, silent nonsense, files left behind, tracebacks on
damaged run files, fixes that do not fix, and the thread count.

Every test drives the real CLI entry point (`conceptlens.cli.main.main`, argv patched) on tiny
inputs, except where a library function is the shared mechanism itself (named in the test).
A clean error is exit code 2, one `error:` and one `fix:` line, no traceback; where a fix names a
command, the test follows it and checks that it succeeds (or fails further on).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from reliability_helpers import assert_clean_error, fault_inject, write_family
from test_issue19_out_paths import TINY_SYN, fake_llm_run

LABELS = "\n".join(["red", "blue"] * 20) + "\n"


def fix_line(result) -> str:
    text = " ".join((result.stdout + result.stderr).split())
    return text.split("fix:", 1)[1]


@pytest.fixture
def acts(tmp_path: Path) -> Path:
    path = tmp_path / "acts.npy"
    np.save(path, np.random.default_rng(0).standard_normal((3, 40, 8)).astype(np.float32))
    (tmp_path / "labels.txt").write_text(LABELS)
    return path


# ---- 3. data loss ---------------------------------------------------------------------------------------------


def test_a_folder_of_another_kind_is_refused_even_without_a_record(tmp_path: Path, tiny_lm: Path, cli):
    """`llm finetune --resume --out` an `llm run` folder overwrote that study's summary.json."""
    run = fake_llm_run(tmp_path / "run")  # results, no record: written before records existed
    write_family(tmp_path / "fam")
    before = fault_inject.tree_digest(run, ignore=())
    result = cli("llm", "finetune", "--model", tiny_lm, "--family", tmp_path / "fam", "--layers", "first:1",
                 "--resume", "--out", run)
    assert_clean_error(result, "'encoding-study' run")
    assert fault_inject.tree_digest(run, ignore=()) == before


def test_a_folder_recorded_as_another_kind_is_refused(tmp_path: Path, cli):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".conceptlens-run.json").write_text(json.dumps({"kind": "encoding-study", "spec": None}))
    result = cli("synthetic", "train", *TINY_SYN, "--out", out)
    assert_clean_error(result, "'encoding-study' run folder")
    assert sorted(p.name for p in out.iterdir()) == [".conceptlens-run.json"]


def test_a_damaged_log_line_is_repaired_keeping_every_good_line(tmp_path: Path, cli):
    """A damaged middle line of metrics.jsonl said "delete the file and rerun" (losing the logged steps)."""
    out = tmp_path / "run"
    assert cli("synthetic", "train", *TINY_SYN, "--out", out).code == 0
    log = out / "metrics.jsonl"
    good = log.read_text().splitlines()
    assert len(good) >= 2
    log.write_text("\n".join([good[0], '{"step": 1, "loss": ', *good[1:]]) + "\n")
    result = cli("synthetic", "train", "--resume", "--set", "steps=6", "--out", out)
    assert_clean_error(result, "line 2 is not valid JSON")
    command = re.search(r"run: conceptlens (repair-log \S+)", fix_line(result))
    assert command, fix_line(result)
    repaired = cli(*command.group(1).split())  # follow the fix
    assert repaired.code == 0, repaired.stderr
    assert log.read_text().splitlines() == good
    assert (out / "metrics.jsonl.damaged").read_text() == '{"step": 1, "loss": \n'
    resumed = cli("synthetic", "train", "--resume", "--set", "steps=6", "--out", out)
    assert resumed.code == 0, resumed.stderr[-2000:]
    assert [json.loads(line) for line in log.read_text().splitlines()][:len(good)] == [json.loads(g) for g in good]


# ---- 4. silent nonsense -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["complex-npy", "complex-safetensors", "no-features", "no-rows-per-layer"])
def test_activations_without_real_numbers_are_refused(kind: str, tmp_path: Path, acts: Path, cli):
    """Complex activations lost their imaginary part; `[40, 0]` activations gave TD 0.5 (exit 0)."""
    array = np.load(acts)
    if kind == "complex-npy":
        path = tmp_path / "c.npy"
        np.save(path, (array + 1j * array).astype(np.complex64))
    elif kind == "complex-safetensors":
        path = tmp_path / "c.safetensors"
        save_file({"activations": torch.complex(torch.from_numpy(array), torch.from_numpy(array))}, str(path))
    elif kind == "no-features":
        path = tmp_path / "z.npy"
        np.save(path, np.zeros((40, 0), np.float32))
    else:
        path = tmp_path / "z.npy"
        np.save(path, np.zeros((0, 40, 8), np.float32))
    result = cli("decodability", path, tmp_path / "labels.txt", "--n-boot", "5")
    assert_clean_error(result, "real" if kind.startswith("complex") else "activations have shape")


@pytest.mark.parametrize("layers", [[0, 1], [[0, 1, 2]], [0.0, 1.5, 2.0]], ids=["short", "2-D", "float"])
def test_a_bad_layers_entry_is_named(layers, tmp_path: Path, acts: Path, cli):
    path = tmp_path / "a.safetensors"
    save_file({"activations": torch.from_numpy(np.load(acts)), "layers": torch.tensor(layers)}, str(path))
    result = cli("decodability", path, tmp_path / "labels.txt", "--n-boot", "5")
    assert_clean_error(result, "'layers' entry")


def test_a_concept_file_with_an_upper_case_suffix_is_read(tmp_path: Path):
    """`language.JSON` was dropped without a word (library: the one reader of family folders)."""
    from conceptlens.tasks.registry import load_family

    family = write_family(tmp_path / "fam")
    (family / "reverse.json").rename(family / "language.JSON")
    assert "language" in load_family(str(family), split="all").concept_names


def test_a_folder_named_like_a_built_in_family_is_not_silently_replaced(tmp_path: Path, cli, monkeypatch):
    """A user folder `./pos` was silently replaced by the built-in family."""
    write_family(tmp_path / "pos")
    monkeypatch.chdir(tmp_path)
    args = ["llm", "run", "--model", tmp_path / "no-model", "--shots", "1", "--prompts-per-concept", "22",
            "--out", tmp_path / "out"]
    result = cli(*args, "--family", "pos")
    assert_clean_error(result, "names both the built-in family and ./pos")
    assert "--family ./pos" in fix_line(result) and "--family builtin:pos" in fix_line(result)
    # follow the fix: ./pos is the user's folder (the run goes on, to the missing model)
    assert_clean_error(cli(*args, "--family", "./pos"), "no-model does not exist")
    from conceptlens.tasks.registry import load_family

    assert load_family("./pos").name == "pos" and set(load_family("./pos").concept_names) >= {"upper", "first"}
    assert "upper" not in load_family("builtin:pos").concept_names
    assert not (tmp_path / "out").exists()


def test_the_report_names_the_k_of_the_run(tmp_path: Path, cli):
    """The report said "10-nearest-neighbour" for a `--k 1` run."""
    run = fake_llm_run(tmp_path / "run")  # its summary.json records k = 1
    assert cli("report", run).code == 0
    page = (run / "report.html").read_text()
    assert "1-nearest-neighbour" in page and "10-nearest-neighbour" not in page


@pytest.mark.parametrize("command,shape", [(["decodability"], "[layers, N, d]"),
                                           (["capture"], "[layers, prompts, d_model]")])
def test_help_keeps_shapes_in_brackets(command, shape, cli, monkeypatch):
    """rich read `[layers, N, d]` as markup and dropped it from --help."""
    result = cli(*command, "--help")
    assert result.code == 0
    assert shape in " ".join(result.stdout.split())


# ---- 5. files left behind ---------------------------------------------------------------------------------------


def test_capture_with_no_layers_leaves_nothing(tmp_path: Path, tiny_lm: Path, cli):
    (tmp_path / "p.txt").write_text("a ->\nb ->\n")
    out = tmp_path / "acts.safetensors"
    result = cli("capture", "--model", tiny_lm, "--prompts", tmp_path / "p.txt", "--layers", "", "--out", out)
    assert_clean_error(result, "names no integer")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.txt"]


def test_reproduce_with_a_mistyped_model_leaves_no_folder(tmp_path: Path, cli):
    """`reproduce --model /typo` left a settings.json that then refused the corrected command."""
    out = tmp_path / "study"
    result = cli("reproduce", "--out", out, "--model", tmp_path / "typo", "--only", "llm_pos", "--no-report")
    assert_clean_error(result, "does not exist")
    assert not out.exists()


def test_a_run_folder_removes_stale_temporaries_when_it_resumes(tmp_path: Path):
    """`llm run` never removed `.td_by_layer.png.XXXX.tmp` left by a kill (library: RunFolder, which every
    command's run folder goes through)."""
    from conceptlens.runs import RunFolder

    out = tmp_path / "run"
    with RunFolder(out, "encoding-study", {"a": 1}):
        (out / "summary.json").write_text("{}")
    stale, fresh = out / ".td_by_layer.png.abcd1234.tmp", out / ".pairwise.png.efgh5678.tmp"
    stale.write_bytes(b"half a png")
    fresh.write_bytes(b"being written")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    with RunFolder(out, "encoding-study", {"a": 1}):
        pass
    assert not stale.exists() and fresh.exists()  # a write in flight elsewhere (under a minute old) is kept


@pytest.mark.slow  # two `llm run`s of the tiny model: ~40 s on the loaded 2-core machine
def test_llm_run_removes_a_killed_figure_write_when_rerun(tmp_path: Path, tiny_lm: Path, cli):
    write_family(tmp_path / "fam")
    args = ["llm", "run", "--model", tiny_lm, "--family", tmp_path / "fam", "--shots", "1",
            "--prompts-per-concept", "22", "--out", tmp_path / "run"]
    assert cli(*args).code == 0
    stale = tmp_path / "run" / ".td_by_layer.png.k1ll3d00.tmp"  # what a kill inside atomic_path leaves
    stale.write_bytes(b"half a png")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    assert cli(*args).code == 0
    assert not stale.exists() and not fault_inject.leftovers(tmp_path / "run")


# ---- 6. tracebacks on damaged run files -------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["settings.json", "stages.json"])
def test_reproduce_with_a_torn_record_is_one_clear_error(which: str, tmp_path: Path, cli):
    out = tmp_path / "study"
    out.mkdir()
    (out / which).write_text('{"seed": 0, "mod')
    before = fault_inject.tree_digest(out, ignore=())
    result = cli("reproduce", "--out", out, "--only", "llm_pos", "--no-report")
    assert_clean_error(result, f"{which}")
    assert (out / which).read_text() == '{"seed": 0, "mod'
    assert {k: v for k, v in fault_inject.tree_digest(out, ignore=()).items() if k == which} == \
        {k: v for k, v in before.items() if k == which}


@pytest.mark.parametrize("damage", [b"task: {kind: sparse\nmodel: [\n", "name: caf\xe9\n".encode("latin-1")],
                         ids=["malformed", "not-utf8"])
@pytest.mark.parametrize("command", ["analyze", "resume"])
def test_a_damaged_run_config_is_one_clear_error(command: str, damage: bytes, tmp_path: Path, cli):
    out = tmp_path / "run"
    assert cli("synthetic", "train", *TINY_SYN, "--out", out).code == 0
    (out / "config.yaml").write_bytes(damage)
    args = ["synthetic", "analyze", out, "--no-umap"] if command == "analyze" else \
        ["synthetic", "train", "--resume", "--out", out]
    assert_clean_error(cli(*args), "config.yaml")




@pytest.mark.parametrize("damage", ["summary-list", "accuracy-without-shots"])
def test_compare_on_damaged_run_files_is_one_clear_error(damage: str, tmp_path: Path, cli):
    run = fake_llm_run(tmp_path / "run")
    if damage == "summary-list":
        (run / "summary.json").write_text("[1, 2]")
    else:
        (run / "accuracy.csv").write_text("concept,accuracy\na,0.5\nb,0.5\n")
    result = cli("llm", "compare", run, "--shots", "1", "--out", tmp_path / "cmp")
    assert_clean_error(result)
    assert not (tmp_path / "cmp").exists()


# ---- 7. fixes that fix ------------------------------------------------------------------------------------------


def test_labels_with_a_bom_read_like_labels_without(tmp_path: Path, acts: Path, cli):
    """A BOM made the first label a concept of one point, and the fix said `--k 1`, which failed the same way."""
    plain = cli("decodability", acts, tmp_path / "labels.txt", "--n-boot", "5", "--out", tmp_path / "plain.json")
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbf" + LABELS.encode())
    bom = cli("decodability", acts, tmp_path / "bom.txt", "--n-boot", "5", "--out", tmp_path / "bom.json")
    assert plain.code == 0 and bom.code == 0, bom.stderr[-2000:]
    assert json.loads((tmp_path / "plain.json").read_text()) == json.loads((tmp_path / "bom.json").read_text())


def test_a_concept_of_one_point_gets_no_k_that_cannot_work(tmp_path: Path, acts: Path, cli):
    (tmp_path / "stray.txt").write_text("\n".join(["odd"] + (["red", "blue"] * 20)[1:]) + "\n")
    result = cli("decodability", acts, tmp_path / "stray.txt", "--n-boot", "5")
    assert_clean_error(result, "['odd'] have a single point")
    assert "--k" not in fix_line(result)


def test_the_suggested_k_works(tmp_path: Path, acts: Path, cli):
    (tmp_path / "few.txt").write_text("\n".join(["red"] * 38 + ["blue"] * 2) + "\n")
    result = cli("decodability", acts, tmp_path / "few.txt", "--n-boot", "5")
    assert_clean_error(result, "fewer than k + 1")
    k = re.search(r"--k (\d+)", fix_line(result)).group(1)
    assert cli("decodability", acts, tmp_path / "few.txt", "--n-boot", "5", "--k", k).code == 0  # follow the fix


def test_a_family_of_duplicate_pairs_names_its_concept_not_null(tmp_path: Path, tiny_lm: Path, cli):
    family = tmp_path / "fam"
    family.mkdir()
    for concept in ("a", "b"):
        (family / f"{concept}.json").write_text(json.dumps([{"input": "x", "output": concept}] * 30))
    result = cli("llm", "run", "--model", tiny_lm, "--family", family, "--shots", "1", "--out", tmp_path / "out")
    assert_clean_error(result, "hold only 1 different input(s)")  # the cause, not "add examples to 'Null'"
    assert "add examples to 'Null'" not in result.stdout + result.stderr
    assert not (tmp_path / "out").exists()


def test_remote_code_without_the_flag_names_the_flag(tmp_path: Path, tiny_lm: Path, cli):
    model = tmp_path / "model"
    shutil.copytree(tiny_lm, model)
    config = json.loads((model / "config.json").read_text())
    config.update(auto_map={"AutoModelForCausalLM": "modeling_x.XModel"}, model_type="x-custom")
    (model / "config.json").write_text(json.dumps(config))
    (tmp_path / "p.txt").write_text("a ->\n")
    args = ["capture", "--model", model, "--prompts", tmp_path / "p.txt", "--out", tmp_path / "a.safetensors"]
    result = cli(*args)
    assert_clean_error(result, "auto_map")
    assert "--trust-remote-code" in fix_line(result)
    followed = cli(*args[:1], "--trust-remote-code", *args[1:])  # the code file is missing: fails further on
    assert followed.code == 2 and "auto_map" not in followed.stdout + followed.stderr
    assert not (tmp_path / "a.safetensors").exists()


def test_intervene_on_a_missing_layer_does_not_suggest_all(tmp_path: Path, tiny_lm: Path, cli):
    write_family(tmp_path / "fam")
    result = cli("llm", "intervene", "--model", tiny_lm, "--family", tmp_path / "fam", "--layer=-1", "--shots", "1",
                 "--out", tmp_path / "out")
    assert_clean_error(result, "layer -1 does not exist")
    assert "all" not in fix_line(result)
    assert not (tmp_path / "out").exists()


# ---- 9. threads -------------------------------------------------------------------------------------------------


def test_threads_option_sets_torch_threads(tmp_path: Path, acts: Path, cli, monkeypatch):
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(name, os.environ.get(name, "1"))  # restored after the test
    previous = torch.get_num_threads()
    try:
        assert cli("--threads", "2", "decodability", acts, tmp_path / "labels.txt", "--n-boot", "5").code == 0
        assert torch.get_num_threads() == 2 and os.environ["OMP_NUM_THREADS"] == "2"
        assert cli("--threads", "1", "decodability", acts, tmp_path / "labels.txt", "--n-boot", "5").code == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(previous)


def test_default_threads_leave_a_core_for_another_job(monkeypatch):
    """Measured on the 2-core machine (RELIABILITY.md): 2 threads beside a busy job took 1.9-2.2x the
    wall time of 1."""
    from conceptlens.cli import threads

    for cores, expected in ((1, 1), (2, 1), (4, 2), (16, 8), (64, 8)):
        monkeypatch.setattr(threads, "usable_cores", lambda cores=cores: cores)
        assert threads.default_threads() == expected
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads.choose_threads(None) == 1 and threads.choose_threads(3) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert threads.choose_threads(None) == 2  # an explicit environment wins over the default
