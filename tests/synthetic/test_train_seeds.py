"""Seeds trained together (stacked weights) write, seed for seed, what separate runs write."""

import json
from pathlib import Path

import pytest
import torch

from conceptlens.errors import ConceptLensError
from conceptlens.safetensors_io import load_tensors
from conceptlens.synthetic import checkpoints
from conceptlens.synthetic.train import checkpoint_path, checkpoint_steps, train
from conceptlens.synthetic.train_seeds import seed_folder, train_seeds

SEEDS = [3, 5, 8]


class Interrupt(Exception):
    pass


def _alone(config, seed, out):
    one = config.model_copy(deep=True)
    one.seed = seed
    return train(one, out)


def _contents(run: Path) -> dict[str, object]:
    """Every file of a run folder, wall-clock seconds left out (timing.jsonl, `elapsed_s`)."""
    files = {}
    for path in sorted(p for p in run.rglob("*") if p.is_file() and p.name != "timing.jsonl"):
        data = path.read_bytes()
        if path.name.endswith(".state.json"):
            data = {k: v for k, v in json.loads(data).items() if k != "elapsed_s"}
        files[path.relative_to(run).as_posix()] = data
    return files


def _assert_same_run(a: Path, b: Path) -> None:
    fa, fb = _contents(a), _contents(b)
    assert sorted(fa) == sorted(fb)
    assert [name for name in fa if fa[name] != fb[name]] == []


def _variant(config, name):
    cfg = config.model_copy(deep=True)
    if name == "paired-curriculum-adamw":  # the quick config's paths: paired tokens, support curriculum
        cfg.model.paired, cfg.train.optimizer, cfg.train.weight_decay = True, "adamw", 0.01
        cfg.task.n_dims, cfg.task.basis_dim, cfg.task.n_bases = 8, 2, 4
        cfg.train.curriculum.enabled, cfg.train.curriculum.start_points, cfg.train.curriculum.every = True, 3, 4
        cfg.train.curriculum.start_support, cfg.train.curriculum.support_every = 1, 5
    return cfg


@pytest.mark.parametrize("variant", ["tiny", "paired-curriculum-adamw"])
def test_a_seed_trained_with_others_is_the_seed_trained_alone(tmp_path, tiny_config, variant):
    """Bit for bit on the CPU: metrics, every checkpoint's weights, optimizer moments, state files."""
    config = _variant(tiny_config, variant)
    folders = train_seeds(config, SEEDS, tmp_path / "together")
    assert folders == [seed_folder(tmp_path / "together", seed) for seed in SEEDS]
    finals = []
    for seed, folder in zip(SEEDS, folders):
        alone = _alone(config, seed, tmp_path / f"alone{seed}")
        _assert_same_run(folder, alone)
        last = checkpoint_steps(alone)[-1]
        a, b = load_tensors(checkpoint_path(alone, last)), load_tensors(checkpoint_path(folder, last))
        assert all(torch.equal(a[k], b[k]) for k in a)
        finals.append(b["read_out.weight"])
    assert not torch.equal(finals[0], finals[1])  # the seeds are different runs


def test_a_killed_multi_seed_run_resumes_exactly(tmp_path, tiny_config):
    straight = train_seeds(tiny_config, SEEDS, tmp_path / "straight")

    def die(step, info):
        if step == 7:  # after the checkpoint at 6: step 7 is lost and redone
            raise Interrupt

    with pytest.raises(Interrupt):
        train_seeds(tiny_config, SEEDS, tmp_path / "resumed", callback=die)
    with pytest.raises(ConceptLensError, match="already holds a run"):
        train_seeds(tiny_config, SEEDS, tmp_path / "resumed")
    resumed = train_seeds(tiny_config, SEEDS, tmp_path / "resumed", resume=True)
    for a, b in zip(straight, resumed):
        _assert_same_run(a, b)


def test_killed_between_two_seeds_checkpoints_all_resume_from_the_last_common_one(tmp_path, tiny_config,
                                                                                   monkeypatch):
    """Killed while the second seed writes step 6: the first has 6, the others only 4; all go back to 4."""
    straight = train_seeds(tiny_config, SEEDS, tmp_path / "straight")
    real_save = checkpoints.save_tensors

    def save(path, tensors, metadata=None, checksum=False):
        if Path(path).name == "step_0000006.optim.safetensors" and Path(path).parent.parent.name == "seed5":
            raise Interrupt
        return real_save(path, tensors, metadata, checksum)

    monkeypatch.setattr(checkpoints, "save_tensors", save)
    with pytest.raises(Interrupt):
        train_seeds(tiny_config, SEEDS, tmp_path / "resumed")
    monkeypatch.setattr(checkpoints, "save_tensors", real_save)
    run = tmp_path / "resumed"
    assert checkpoints.resume_point(seed_folder(run, 3)) == 6 and checkpoints.resume_point(seed_folder(run, 5)) == 4
    assert checkpoints.common_resume_point([seed_folder(run, seed) for seed in SEEDS]) == 4
    resumed = train_seeds(tiny_config, SEEDS, run, resume=True)
    for a, b in zip(straight, resumed):
        _assert_same_run(a, b)


def test_each_seed_folder_is_a_run_that_analyze_accepts_and_the_seeds_stand_side_by_side(tmp_path, tiny_config):
    from conceptlens.synthetic.analysis import analyze_seeds, select_steps, seed_folders

    run = tmp_path / "run"
    folders = train_seeds(tiny_config, [0, 1], run)
    assert seed_folders(run) == {0: folders[0], 1: folders[1]} and seed_folders(folders[0]) == {}
    results = analyze_seeds(run, max_checkpoints=3, sequences_per_basis=12, baseline_sequences_per_basis=2,
                            umap=False)
    assert sorted(results) == [0, 1]
    for seed, folder in zip([0, 1], folders):
        result = results[seed]
        assert sorted(result.decodability.step.unique()) == select_steps(checkpoint_steps(folder), 3)
        assert set(result.loss_per_basis.basis) == {"B1", "B2", "B3", "B4"}
        assert (folder / "moments.json").is_file() and (folder / "decodability.png").is_file()
    import pandas as pd

    td = pd.read_csv(run / "seeds_decodability.csv")
    assert list(td.columns)[0] == "seed" and sorted(td.seed.unique()) == [0, 1]
    assert len(td) == sum(len(r.decodability) for r in results.values())
    assert (run / "seeds.png").stat().st_size > 0 and json.loads((run / "seeds_moments.json").read_text()).keys() == {
        "0", "1"}


@pytest.mark.parametrize("seeds, message", [([], "no seeds"), ([1, 1], "repeat a seed")])
def test_bad_seed_lists_are_refused(tmp_path, tiny_config, seeds, message):
    with pytest.raises(ConceptLensError, match=message):
        train_seeds(tiny_config, seeds, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_seeds_and_a_seed_override_are_one_clear_error(tmp_path, monkeypatch, capsys):
    import sys

    from conceptlens.cli.main import main

    monkeypatch.setenv("COLUMNS", "400")
    monkeypatch.setattr(sys, "argv", ["conceptlens", "synthetic", "train", "--out", str(tmp_path / "run"),
                                      "--seeds", "0,1", "--set", "seed=2"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code != 0
    assert "--seeds and a seed set with --set both choose the seed" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
