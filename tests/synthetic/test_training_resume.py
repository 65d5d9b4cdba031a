import json

import pytest
import torch

from conceptlens.errors import ConceptLensError
from conceptlens.storage import load_tensors
from conceptlens.synthetic.train import checkpoint_path, checkpoint_steps, learning_rate, points_at, train


class Interrupt(Exception):
    pass


def _metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_checkpoint_schedule_and_files(tmp_path, tiny_config):
    run = train(tiny_config, tmp_path / "run")
    assert checkpoint_steps(run) == [0, 2, 4, 6, 8, 12]
    assert [r["step"] for r in _metrics(run)] == [0, 3, 6, 9, 12]
    assert (run / "config.yaml").is_file() and (run / "timing.jsonl").is_file()
    optim = sorted(p.name for p in (run / "checkpoints").glob("*.optim.safetensors"))
    assert optim == ["step_0000012.optim.safetensors"]  # keep_optimizer: last
    assert not list(run.rglob("*.pt")) and not list(run.rglob("*.pkl"))


def test_resume_is_exact(tmp_path, tiny_config):
    straight = train(tiny_config, tmp_path / "straight")

    def die(step, info):
        if step == 7:  # after the checkpoint at 6: steps 7 is lost and redone
            raise Interrupt

    with pytest.raises(Interrupt):
        train(tiny_config, tmp_path / "resumed", callback=die)
    resumed = train(tiny_config, tmp_path / "resumed", resume=True)
    assert _metrics(straight) == _metrics(resumed)
    for step in checkpoint_steps(straight):
        a, b = load_tensors(checkpoint_path(straight, step)), load_tensors(checkpoint_path(resumed, step))
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_existing_run_needs_resume(tmp_path, tiny_config):
    train(tiny_config, tmp_path / "run")
    with pytest.raises(ConceptLensError):
        train(tiny_config, tmp_path / "run")
    changed = tiny_config.model_copy(update={"seed": 4})
    with pytest.raises(ConceptLensError):
        train(changed, tmp_path / "run", resume=True)


def test_schedules(tiny_config):
    assert learning_rate(0, tiny_config) == pytest.approx(1.5e-3) and learning_rate(5, tiny_config) == 3e-3
    cfg = tiny_config.model_copy(deep=True)
    cfg.train.curriculum.enabled = True
    cfg.train.curriculum.start_points, cfg.train.curriculum.every = 3, 4
    assert [points_at(s, cfg) for s in (0, 4, 8, 100)] == [3, 4, 5, 6]
