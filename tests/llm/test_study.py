"""The encoding study on a tiny model: every table, figure and summary field is written with the
right columns, stages resume (and recompute when torn or from other settings), the accuracy-vs-TD
fit is right, bad settings stop before any folder exists, and a checkpoint series runs."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from conceptlens.activations.capture import load_activations
from conceptlens.errors import ConceptLensError
from conceptlens.llm.encoding.series import revision_label, run_checkpoint_series
from conceptlens.llm.encoding import study as study_module
from conceptlens.llm.encoding.study import fit_accuracy_vs_td, run_study, stage_path
from conceptlens.models.loader import LoadedModel, load_model
from conceptlens.tasks.bitwise import bitwise_family

SHOTS = [1, 2]
PPC, K = 8, 3
REAL_UMAP = study_module.umap_embedding
FIGURES = ["td_by_layer.png", "td_per_concept.png", "accuracy_vs_td.png", "pairwise.png", "umap.png"]


@pytest.fixture(scope="module")
def lm(tiny_folder) -> LoadedModel:
    return load_model(str(tiny_folder))


@pytest.fixture(scope="module")
def family():
    return bitwise_family(n_examples=64)


def pca_2d(points, seed):
    """Stands in for UMAP in unit tests (numba compiles UMAP for ~40 s in every fresh process)."""
    centred = points - points.mean(axis=0)
    return centred @ np.linalg.svd(centred, full_matrices=False)[2][:2].T


@pytest.fixture(scope="module", autouse=True)
def fast_umap():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(study_module, "umap_embedding", pca_2d)
        yield


@pytest.fixture(scope="module")
def study(lm, family, tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "run"
    summary = run_study(lm, "bitwise", family, SHOTS, PPC, 0, out, k=K)
    return out, summary


@pytest.mark.slow
def test_umap_embedding_is_two_dimensional_and_seeded():
    real_umap = REAL_UMAP
    points = np.random.default_rng(0).normal(size=(60, 8))
    points[:30] += 5
    first = real_umap(points, 0)
    assert first.shape == (60, 2) and np.allclose(first, real_umap(points, 0))
    centre = first[:30].mean(axis=0), first[30:].mean(axis=0)
    assert np.linalg.norm(centre[0] - centre[1]) > 1


def test_writes_every_table_and_figure(study, lm, family):
    out, summary = study
    n_concepts, n_layers = len(family.concepts), lm.n_layers
    for name in FIGURES + ["summary.json", "generations.csv", "umap.csv"]:
        assert (out / name).stat().st_size > 0, name
    td = pd.read_csv(out / "decodability.csv")
    assert list(td.columns[:6]) == ["model", "family", "shots", "layer", "concept", "td"]
    assert len(td) == len(SHOTS) * (n_layers + 1) * n_concepts
    assert td.td.between(0, 1).all() and set(td.layer) == set(range(n_layers + 1))
    acc = pd.read_csv(out / "accuracy.csv")
    assert list(acc.columns[:6]) == ["model", "family", "shots", "concept", "accuracy", "n"]
    assert len(acc) == len(SHOTS) * n_concepts and (acc.n == PPC).all()
    pairwise = pd.read_csv(out / "pairwise.csv")
    assert {"concept_a", "concept_b", "td", "layer"} <= set(pairwise.columns) and len(pairwise) == n_concepts ** 2
    assert (pairwise[pairwise.concept_a == pairwise.concept_b].td == 1).all()
    on_disk = json.loads((out / "summary.json").read_text())
    for key in ("best_layer", "best_layer_heldout", "td_heldout", "r2", "r2_ci95", "n_layers", "mean_td_best_layer",
                "timings", "settings", "fits", "per_shots"):
        assert key in on_disk, key
    assert on_disk["n_layers"] == n_layers and 0 <= on_disk["best_layer"] <= n_layers
    assert set(on_disk["mean_td_best_layer"]) == {"1", "2"}
    best = td[(td.layer == on_disk["best_layer"]) & (td.shots == 2)].td.mean()
    assert on_disk["mean_td_best_layer"]["2"] == pytest.approx(best)
    assert td[td.shots == 2].groupby("layer").td.mean().idxmax() == on_disk["best_layer"]


def test_activations_per_shots_are_readable_and_match_the_labels(study, lm, family):
    out, _ = study
    for shots in SHOTS:
        acts, layers = load_activations(stage_path(out, shots))
        assert acts.shape == (lm.n_layers + 1, PPC * len(family.concepts), lm.layout.d_model)
        assert layers == list(range(lm.n_layers + 1))
    generations = pd.read_csv(out / "generations.csv", keep_default_na=False, dtype={"completion": str, "answer": str})
    accuracy = pd.read_csv(out / "accuracy.csv").set_index(["shots", "concept"])
    recomputed = generations.groupby(["shots", "concept"]).correct.mean()
    for index, value in recomputed.items():
        assert accuracy.loc[index, "accuracy"] == pytest.approx(value)
    assert (generations.correct == (generations.completion == generations.answer)).all()


def test_rerun_skips_finished_stages_and_redoes_torn_ones(study, lm, family):
    out, first = study
    stamp = {s: stage_path(out, s).stat().st_mtime_ns for s in SHOTS}
    again = run_study(lm, "bitwise", family, SHOTS, PPC, 0, out, k=K)
    assert all(again["per_shots"][str(s)]["resumed"] for s in SHOTS)
    assert all(stage_path(out, s).stat().st_mtime_ns == stamp[s] for s in SHOTS)
    assert again["mean_td_best_layer"] == first["mean_td_best_layer"]
    with open(stage_path(out, 2), "ab") as handle:  # a torn or altered stage fails its checksum
        handle.write(b"x")
    third = run_study(lm, "bitwise", family, SHOTS, PPC, 0, out, k=K)
    assert third["per_shots"]["1"]["resumed"] and not third["per_shots"]["2"]["resumed"]
    assert third["mean_td_best_layer"] == first["mean_td_best_layer"]  # same prompts, same model


def test_other_settings_or_weights_recompute(study, lm, family, tiny_folder):
    out, _ = study
    other = run_study(lm, "bitwise", family, [1], PPC, 1, out.parent / "other", k=K)
    assert not other["per_shots"]["1"]["resumed"]
    reseeded = run_study(lm, "bitwise", family, [1], PPC, 5, out.parent / "other", k=K)
    assert not reseeded["per_shots"]["1"]["resumed"]
    changed = load_model(str(tiny_folder))  # same name, other weights (as after finetuning)
    with torch.no_grad():
        changed.model.model.layers[0].mlp.down_proj.weight.mul_(1.5)
    assert not run_study(changed, "bitwise", family, [1], PPC, 5, out.parent / "other", k=K)["per_shots"]["1"]["resumed"]
    assert run_study(changed, "bitwise", family, [1], PPC, 5, out.parent / "other", k=K)["per_shots"]["1"]["resumed"]


@pytest.mark.parametrize("shots, ppc, match", [
    ([64], PPC, "64 example"),  # too few examples for the shots
    ([1, 1], PPC, "distinct"),
    ([], PPC, "no shots"),
    ([1], 3, "too few"),  # TD's vote needs k + 1 = 4 prompts of every concept
])
def test_bad_settings_write_nothing(lm, family, tmp_path, shots, ppc, match):
    with pytest.raises(ConceptLensError, match=match):
        run_study(lm, "bitwise", family, shots, ppc, 0, tmp_path / "run", k=K)
    assert not (tmp_path / "run").exists()


def test_fit_of_accuracy_against_td():
    td = np.array([0.2, 0.4, 0.6, 0.8])
    fit = fit_accuracy_vs_td(td, 0.5 * td + 0.1)
    assert fit["r2"] == pytest.approx(1.0) and fit["slope"] == pytest.approx(0.5)
    assert fit["intercept"] == pytest.approx(0.1) and fit["r2_ci95"][0] == pytest.approx(1.0)
    noisy = fit_accuracy_vs_td(td, np.array([0.3, 0.1, 0.4, 0.2]))
    assert 0 <= noisy["r2"] < 0.5 and noisy["r2_ci95"][0] <= noisy["r2"] <= noisy["r2_ci95"][1]
    assert np.isnan(fit_accuracy_vs_td(td, np.zeros(4))["r2"])  # constant accuracy: undefined


def test_cli_refuses_bad_input_with_exit_code_2(tmp_path, monkeypatch, tiny_folder):
    from conceptlens.cli.main import main

    for args in (["--family", "nope"], ["--family", "bitwise", "--shots", "600"],
                 ["--family", str(tmp_path / "missing")], ["--family", "bitwise", "--shots", "x"]):
        monkeypatch.setattr(sys, "argv", ["conceptlens", "llm", "run", "--model", str(tiny_folder), *args,
                                          "--out", str(tmp_path / "run")])
        with pytest.raises(SystemExit) as info:
            main()
        assert info.value.code == 2, args
        assert not (tmp_path / "run").exists()


def test_checkpoint_series_over_two_local_folders(tiny_folder, tmp_path, family):
    import transformers as tf

    second = tmp_path / "step2"
    torch.manual_seed(7)
    model = tf.AutoModelForCausalLM.from_pretrained(tiny_folder)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    model.save_pretrained(second)
    tf.AutoTokenizer.from_pretrained(tiny_folder).save_pretrained(second)
    revisions = [str(tiny_folder), str(second)]
    out = tmp_path / "series"
    table = run_checkpoint_series(lambda r: load_model(r), revisions, "bitwise", family, [1], 24, 0, out, k=K)
    labels = [revision_label(r) for r in revisions]
    assert list(dict.fromkeys(table.revision)) == labels and list(table.order) == [0, 1]
    for label in labels:
        assert (out / f"revision={label}" / "summary.json").exists()
    on_disk = pd.read_csv(out / "checkpoint_series.csv")
    assert {"revision", "order", "shots", "mean_td", "accuracy", "best_layer"} <= set(on_disk.columns)
    assert (out / "checkpoint_series.png").stat().st_size > 0
    assert revision_label("allenai/OLMo step:1000") == "allenai_OLMo_step_1000"


def test_too_few_prompts_for_the_heldout_split_only_skip_it(lm, family, tmp_path):
    """12 prompts per concept with k = 10: TD runs (k + 1 = 11), the held-out layer choice (22) is skipped."""
    summary = run_study(lm, "bitwise", family, [1], 12, 0, tmp_path / "run", k=10)
    assert summary["heldout_layer_choice"]["skipped"] and summary["best_layer_heldout"] is None
    assert "held-out layer choice skipped" in summary["heldout_layer_choice"]["note"]
    assert "22 prompts per concept" in summary["heldout_layer_choice"]["note"]
    on_disk = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert on_disk["heldout_layer_choice"] == summary["heldout_layer_choice"]
    assert len(pd.read_csv(tmp_path / "run" / "decodability.csv")) == (lm.n_layers + 1) * len(family.concepts)
    enough = run_study(lm, "bitwise", family, [1], PPC, 0, tmp_path / "enough", k=K)
    assert not enough["heldout_layer_choice"]["skipped"] and enough["best_layer_heldout"] is not None


def test_the_prompt_format_is_used_and_recorded(lm, family, tmp_path):
    from conceptlens.prompts import PromptFormat

    summary = run_study(lm, "bitwise", family, [1], PPC, 0, tmp_path / "run", k=K,
                        fmt=PromptFormat(separator=" =>", answer_prefix="  "), fit_format=False)
    assert (summary["format"]["separator"], summary["format"]["answer_prefix"]) == (" =>", "  ")
    assert not summary["format"]["fitted_to_tokenizer"]["changed"]
    default = run_study(lm, "bitwise", family, [1], PPC, 0, tmp_path / "default", k=K)
    # the byte tokenizer writes every answer's leading space as a token of its own: it moves into the separator
    assert (default["format"]["separator"], default["format"]["answer_prefix"]) == (" -> ", "")
    assert default["format"]["fitted_to_tokenizer"]["changed"]
    # other prompts, other activations: the stage file of one format is never reused for another
    first = load_activations(stage_path(tmp_path / "run", 1))[0]
    second = load_activations(stage_path(tmp_path / "default", 1))[0]
    assert not np.allclose(first, second)


def test_cli_run_with_few_prompts_and_a_format(tiny_folder, tmp_path, monkeypatch, capsys):
    """`llm run` with 12 prompts per concept (k = 10) finishes, says why the held-out choice was skipped,
    and uses the --separator / --answer-prefix it was given."""
    from conceptlens.cli.main import main

    out = tmp_path / "run"
    monkeypatch.setattr(sys, "argv", ["conceptlens", "llm", "run", "--model", str(tiny_folder), "--family", "bitwise",
                                      "--shots", "1", "--prompts-per-concept", "12", "--separator", " =>",
                                      "--answer-prefix", "  ", "--no-fit-format", "--out", str(out)])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["heldout_layer_choice"]["skipped"] and summary["format"]["separator"] == " =>"
    assert summary["format"]["answer_prefix"] == "  " and summary["settings"]["fit_format"] is False
    assert "held-out layer choice skipped" in " ".join(capsys.readouterr().err.split())  # the console is stderr
