import pytest

from conceptlens.errors import ConceptLensError
from conceptlens.synthetic.config import available_configs, load_config


def test_packaged_configs_load():
    for name in ("quick", "paper", "six-bases", "overlapping", "families"):
        assert name in available_configs()
        load_config(name)
    paper = load_config("paper")
    assert (paper.model.n_layers, paper.model.n_heads, paper.model.d_model) == (12, 8, 256)
    assert paper.train.batch_size == 128 and paper.train.steps == 80000 and tuple(paper.train.betas) == (0.9, 0.9999)


def test_overrides_bare_and_dotted():
    cfg = load_config("quick", ["steps=500", "seed=1", "model.y_channel=true", "train.lr=3e-4"])
    assert cfg.train.steps == 500 and cfg.seed == 1 and cfg.model.y_channel is True and cfg.train.lr == 3e-4


@pytest.mark.parametrize("override", ["stepz=5", "train.nope=1", "steps=many", "lr=-1", "steps"])
def test_bad_overrides_are_rejected(override):
    with pytest.raises(ConceptLensError):
        load_config("quick", [override])


def test_unknown_yaml_key_rejected(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("task: {n_dims: 8, colour: red}\n")
    with pytest.raises(ConceptLensError):
        load_config(str(path))


def test_missing_config_name():
    with pytest.raises(ConceptLensError):
        load_config("no-such-config")


def test_package_analyze_stays_a_function_after_its_module_is_imported():
    import importlib

    import conceptlens.synthetic as synthetic

    importlib.import_module("conceptlens.synthetic.analysis")  # (a module named `analyze` used to replace it)
    assert callable(synthetic.analyze) and not isinstance(synthetic.analyze, type(synthetic))
