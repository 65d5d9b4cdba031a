import json

import pytest
import torch

from conceptlens.errors import ConceptLensError
from conceptlens.safetensors_io import load_tensors
from conceptlens.synthetic.schedule import curriculum_end, learning_rate, points_at, support_at
from conceptlens.synthetic.train import checkpoint_path, checkpoint_steps, load_run_config, train


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


def test_resume_removes_what_a_killed_write_left(tmp_path, tiny_config):
    """A kill -9 inside `atomic_path` / `atomic_folder` leaves hidden temporaries; resuming deletes
    those older than a minute (a younger one may be another process's write in flight)."""
    import os
    import time

    run = train(tiny_config, tmp_path / "run")
    stale = [run / "checkpoints" / ".step_0000012.safetensors.ab_c1234.tmp", run / ".metrics.jsonl.zz9y8x7w.tmp",
             run / ".umap.png.q1w2e3r4.staging"]
    fresh = run / ".loss_per_basis.csv.k9j8h7g6.tmp"
    for path in stale[:2] + [fresh]:
        path.write_bytes(b"half")
    stale[2].mkdir()
    for path in stale:
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    kept = [run / ".notes", run / "other_run" / ".metrics.jsonl.zz9y8x7w.tmp"]
    kept[1].parent.mkdir()
    for path in kept:
        path.write_text("mine")
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    train(tiny_config, run, resume=True)
    assert not any(path.exists() for path in stale)
    assert fresh.exists() and all(path.read_text() == "mine" for path in kept)


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
    assert support_at(0, cfg) is None  # no support curriculum unless start_support is set
    cfg.train.curriculum.start_support, cfg.train.curriculum.support_every = 1, 5
    cfg.task.n_dims, cfg.task.basis_dim = 8, 2
    assert [support_at(s, cfg) for s in (0, 4, 5, 100)] == [1, 1, 2, 2]  # then the whole basis
    assert curriculum_end(cfg) == 12 and curriculum_end(tiny_config) is None  # points 3 -> 6 by step 12


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


def _continuation(tiny_config, source, steps=20, init_step=None):
    cfg = tiny_config.model_copy(deep=True)
    cfg.train.steps, cfg.train.init_from, cfg.train.init_step = steps, str(source), init_step
    return cfg


def test_continuation_holds_the_whole_series_and_starts_from_the_weights(tmp_path, tiny_config):
    first = train(tiny_config, tmp_path / "first")  # 12 steps
    cont = train(_continuation(tiny_config, first), tmp_path / "cont")
    steps = checkpoint_steps(cont)
    assert steps[: len(checkpoint_steps(first))] == checkpoint_steps(first) and steps[-1] == 20
    records = _metrics(cont)
    assert records[:5] == _metrics(first) and [r["step"] for r in records[5:]] == [15, 18, 20]
    a, b = load_tensors(checkpoint_path(first, 12)), load_tensors(checkpoint_path(cont, 12))
    assert all(torch.equal(a[k], b[k]) for k in a)  # the step it continued from is that run's weights
    assert learning_rate(12, load_run_config(cont)) == pytest.approx(1.5e-3)  # warm-up counted from step 12
    assert load_run_config(cont).train.init_step == 12


def test_continuation_resumes_exactly(tmp_path, tiny_config):
    first = train(tiny_config, tmp_path / "first")
    straight = train(_continuation(tiny_config, first, init_step=8), tmp_path / "straight")

    def die(step, info):
        if step == 15:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(_continuation(tiny_config, first, init_step=8), tmp_path / "resumed", callback=die)
    resumed = train(_continuation(tiny_config, first, init_step=8), tmp_path / "resumed", resume=True)
    assert _metrics(straight) == _metrics(resumed)
    b = load_tensors(checkpoint_path(resumed, 20))
    assert all(torch.equal(v, b[k]) for k, v in load_tensors(checkpoint_path(straight, 20)).items())


@pytest.mark.parametrize("change, message", [
    ({"init_step": 5}, "no checkpoint at step 5"),
    ({"steps": 12}, "does not go past"),
    ({"init_from": "nowhere"}, "neither a run folder nor a shipped run"),
])
def test_continuation_refuses_bad_sources(tmp_path, tiny_config, change, message):
    first = train(tiny_config, tmp_path / "first")
    cfg = _continuation(tiny_config, first)
    for key, value in change.items():
        setattr(cfg.train, key, value)
    with pytest.raises(ConceptLensError, match=message):
        train(cfg, tmp_path / "cont")
    assert not (tmp_path / "cont").exists()


def test_continuation_needs_the_same_model(tmp_path, tiny_config):
    first = train(tiny_config, tmp_path / "first")
    cfg = _continuation(tiny_config, first)
    cfg.model.d_model = 32
    with pytest.raises(ConceptLensError, match="another model or task"):
        train(cfg, tmp_path / "cont")


def test_resume_may_lengthen_a_constant_lr_run(tmp_path, tiny_config):
    longer = tiny_config.model_copy(deep=True)
    longer.train.steps = 20
    straight = train(longer, tmp_path / "straight")
    train(tiny_config, tmp_path / "extended")  # 12 steps, then 8 more
    extended = train(longer, tmp_path / "extended", resume=True)
    final = load_tensors(checkpoint_path(extended, 20))
    assert all(torch.equal(v, final[k]) for k, v in load_tensors(checkpoint_path(straight, 20)).items())
    assert all(r in _metrics(extended) for r in _metrics(straight))  # plus the record of the old end, step 12
    assert load_run_config(extended).train.steps == 20
    cosine = longer.model_copy(deep=True)
    cosine.train.schedule, cosine.train.steps = "cosine", 30
    with pytest.raises(ConceptLensError, match="only train.steps may grow"):
        train(cosine, tmp_path / "extended", resume=True)


def test_the_shipped_quick_series_is_the_quick_config(tmp_path):
    """Every shipped `quick-seedN` is `--config quick --set seed=N` cut at its last step; retraining
    its first 250 steps gives its step-250 weights (float16) up to float rounding across CPUs."""
    from conceptlens.synthetic.config import load_config
    from conceptlens.synthetic.shipped import copy_shipped_run, shipped_runs

    names = [name for name in shipped_runs() if name.startswith("quick-seed")]
    assert names
    for name in names:
        copy = copy_shipped_run(name, tmp_path / name)
        shipped_config = load_run_config(copy)
        quick = load_config("quick", [f"seed={name.removeprefix('quick-seed')}"])
        quick.train.steps = shipped_config.train.steps
        assert shipped_config == quick
        assert 250 in checkpoint_steps(copy)
        quick.train.steps = 250
        ours = load_tensors(checkpoint_path(train(quick, tmp_path / f"ours-{name}"), 250))
        for key, value in load_tensors(checkpoint_path(copy, 250), verify=True).items():
            assert torch.allclose(ours[key].half().float(), value.float(), rtol=2e-2, atol=2e-3), key


def test_a_missing_device_is_one_clear_error_before_anything_is_written(tmp_path, tiny_config):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    with pytest.raises(ConceptLensError, match="no CUDA device"):
        train(tiny_config, tmp_path / "run", device="cuda")
    with pytest.raises(ConceptLensError, match="unknown device"):
        train(tiny_config, tmp_path / "run", device="banana")
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_on_a_gpu_resumes_exactly_and_stays_close_to_the_cpu(tmp_path, tiny_config):
    """Same batches on both devices (drawn on the CPU): the GPU run tracks the CPU run, and a GPU
    run killed and resumed ends with the weights of an uninterrupted GPU run (to GPU
    nondeterminism: attention backward kernels may add in any order)."""
    cpu = train(tiny_config, tmp_path / "cpu")
    gpu = train(tiny_config, tmp_path / "gpu", device="cuda")

    def die(step, info):
        if step == 7:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(tiny_config, tmp_path / "resumed", callback=die, device="cuda")
    resumed = train(tiny_config, tmp_path / "resumed", resume=True, device="cuda")
    last = checkpoint_steps(gpu)[-1]
    a, b, c = (load_tensors(checkpoint_path(run, last)) for run in (gpu, resumed, cpu))
    assert all(torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-5) for k in a)
    assert all(torch.allclose(a[k], c[k], atol=1e-3, rtol=1e-3) for k in a)
