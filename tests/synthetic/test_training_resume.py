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


def test_shipped_series_is_the_run_cut_at_its_last_step(tmp_path, tiny_config, monkeypatch):
    """ship_run thins to the chosen steps (float16), cuts config and metrics there, and the copy is
    exactly the checkpoints of a run trained to that step (constant learning rate)."""
    from conceptlens.synthetic import shipped
    from conceptlens.synthetic.train import load_run_config

    monkeypatch.setattr(shipped, "shipped_root", lambda: tmp_path / "assets")
    tiny_config.train.schedule = "constant"
    long = train(tiny_config, tmp_path / "long")
    shipped.ship_run(long, "tiny-seed3", [0, 4, 8], "conceptlens synthetic train --config tiny --set steps=8")
    copy = shipped.copy_shipped_run("tiny-seed3", tmp_path / "copy")
    assert load_run_config(copy).train.steps == 8 and checkpoint_steps(copy) == [0, 4, 8]
    assert [r["step"] for r in _metrics(copy)] == [0, 3, 6]
    tiny_config.train.steps = 8
    short = train(tiny_config, tmp_path / "short")
    assert _metrics(short)[:3] == _metrics(copy)
    for step in (4, 8):
        for name, value in load_tensors(checkpoint_path(copy, step), verify=True).items():
            assert value.dtype == torch.float16
            assert torch.equal(value, load_tensors(checkpoint_path(short, step))[name].half())
