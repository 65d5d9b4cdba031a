import torch

from conceptlens.hooks import Trace, layout_for
from conceptlens.synthetic.model import GPTConfig, RegressionGPT
from conceptlens.synthetic.patching import (PATCH_MODES, demonstration_positions, diagonal_contrast, paper_block,
                                            patch_edit, patching_matrix, scoring_windows)
from conceptlens.synthetic.probes import head_importance, representations
from conceptlens.synthetic.tasks import make_task


def _tiny(y_channel=False, paired=False):
    torch.manual_seed(0)
    model = RegressionGPT(GPTConfig(n_dims=4, n_points=6, n_layers=2, n_heads=2, d_model=16, y_channel=y_channel,
                                    paired=paired))
    task = make_task("sparse", n_dims=4, basis_dim=1, n_bases=4, n_points=6)
    return model.eval(), task, task.test_set(12, seed=0)


class TestModel:
    def test_shapes_and_causality(self):
        model, task, batch = _tiny()
        pred = model(batch.xs, batch.ys)
        assert pred.shape == batch.ys.shape
        ys = batch.ys.clone()
        ys[:, 3] += 5.0  # y_4 may only change predictions 5 and 6
        changed = (model(batch.xs, ys) - pred).abs().amax(0) > 1e-6
        assert changed.tolist() == [False, False, False, False, True, True]

    def test_token_formats(self):
        model, task, batch = _tiny()
        tokens = model.tokens(batch.xs, batch.ys)
        assert tokens.shape == (len(batch), 12, 4) and torch.equal(tokens[:, 1, 0], batch.ys[:, 0])
        separate, _, _ = _tiny(y_channel=True)
        tokens = separate.tokens(batch.xs, batch.ys)
        assert tokens.shape[-1] == 5 and torch.equal(tokens[:, 1, 4], batch.ys[:, 0])
        assert (tokens[:, 0, 4] == 0).all() and (tokens[:, 1, :4] == 0).all()
        paired, _, _ = _tiny(paired=True)  # y tokens carry their x: [x_i, y_i]; x tokens [x_i, 0]
        tokens = paired.tokens(batch.xs, batch.ys)
        assert tokens.shape[-1] == 5 and torch.equal(tokens[:, 1::2, :4], batch.xs)
        assert torch.equal(tokens[:, 0::2, :4], batch.xs) and torch.equal(tokens[:, 1::2, 4], batch.ys)
        assert (tokens[:, 0::2, 4] == 0).all()


class TestHooks:
    def test_layout(self):
        model, _, _ = _tiny()
        layout = layout_for(model)
        assert (layout.n_layers, layout.n_heads, layout.d_model) == (2, 2, 16)
        assert layout.module_for("head_out", 1) is model.blocks[1].attn.out_proj

    def test_capture_matches_manual_forward(self):
        model, _, batch = _tiny()
        with Trace(layout_for(model), ["blocks.0.resid_post", "blocks.1.head_out"]) as trace:
            model(batch.xs, batch.ys)
        tokens = model.tokens(batch.xs, batch.ys)
        hidden = model.read_in(tokens) + model.position(torch.arange(tokens.shape[1]))
        assert torch.allclose(trace.captured["blocks.0.resid_post"], model.blocks[0](hidden), atol=1e-6)
        assert trace.captured["blocks.1.head_out"].shape == (len(batch), 12, 2, 8)

    def test_stop_ends_the_forward(self):
        model, _, batch = _tiny()
        with Trace(layout_for(model), ["blocks.0.resid_post"], stop=True) as trace:
            model(batch.xs, batch.ys)
        assert "blocks.0.resid_post" in trace.captured


class TestInterventions:
    def test_representations_at_the_last_x_token(self):
        model, _, batch = _tiny()
        _, acts = representations(model, batch, [0, 1], "x")
        _, paper = representations(model, batch, [1])
        with Trace(layout_for(model), ["blocks.1.resid_post"]) as trace:
            model(batch.xs, batch.ys)
        assert acts.shape == (2, len(batch), 16)
        assert torch.allclose(acts[1], trace.captured["blocks.1.resid_post"][:, 10])
        assert torch.allclose(paper[0], trace.captured["blocks.1.resid_post"][:, 11])  # y of demonstration 6

    def test_self_patch_with_shift_changes_nothing(self):
        model, task, batch = _tiny()
        windows = scoring_windows(1, 4, 6)
        frame, _ = patching_matrix(model, batch, 0, task.concept_names, windows, modes=("shift",))
        diagonal = frame[frame.source == frame.target]
        assert diagonal.loss_change.abs().max() < 1e-6
        assert frame[frame.source != frame.target].loss_change.abs().max() > 0

    def test_single_sequence_concept_replace_is_identity(self):
        model, task, batch = _tiny()
        one = batch.select(torch.tensor([0, 12, 24, 36]))  # one sequence per concept: mean = itself
        frame, _ = patching_matrix(model, one, 0, task.concept_names, {"all": list(range(6))}, modes=("replace",))
        assert frame[frame.source == frame.target].loss_change.abs().max() < 1e-6

    def test_each_mode_edits_only_the_demonstration_y_tokens_of_its_block(self):
        model, task, batch = _tiny()
        layout = layout_for(model)
        positions = demonstration_positions(6)
        assert positions.tolist() == [1, 3, 5, 7, 9]
        points = ["blocks.0.resid_post", "blocks.1.resid_post"]
        with Trace(layout, points) as trace:
            model(batch.xs, batch.ys)
        clean = {p: trace.captured[p] for p in points}
        means = torch.stack([clean[points[0]][batch.concepts == c][:, positions].mean(0) for c in range(4)])
        for mode, rule in PATCH_MODES.items():
            edit = patch_edit(mode, means, batch.concepts, 2, positions)
            with Trace(layout, points, edits={points[0]: edit}) as trace:
                model(batch.xs, batch.ys)
            edited = trace.captured[points[0]]
            untouched = [p for p in range(12) if p not in positions.tolist()]
            assert torch.equal(edited[:, untouched], clean[points[0]][:, untouched])  # x tokens and y_K kept
            expected = rule(clean[points[0]][:, positions], means[batch.concepts], means[2])
            assert torch.allclose(edited[:, positions], expected, atol=1e-6), mode
            assert not torch.allclose(edited[:, positions], clean[points[0]][:, positions])
            assert torch.allclose(trace.captured[points[1]][:, 0], clean[points[1]][:, 0])  # before any y: same

    def test_scoring_window_selects_the_informative_predictions(self):
        assert scoring_windows(4, 16, 20) == {"informative": list(range(5, 16)), "all": list(range(20))}
        assert paper_block(12) == 4 and paper_block(4) == 1 and paper_block(8) == 2 and paper_block(2) == 0
        model, task, batch = _tiny()
        only = {"informative": [2, 3]}
        frame, changes = patching_matrix(model, batch, 0, task.concept_names, only, modes=("replace",))
        positions = demonstration_positions(6)
        _, means = __import__("conceptlens.synthetic.patching", fromlist=["basis_means"]).basis_means(
            model, batch, 0, positions, 4)
        clean = (model(batch.xs, batch.ys) - batch.ys).pow(2)
        with Trace(layout_for(model), edits={"blocks.0.resid_post": patch_edit("replace", means, batch.concepts, 1,
                                                                                 positions)}):
            patched = (model(batch.xs, batch.ys) - batch.ys).pow(2)
        expected = (patched - clean)[:, [2, 3]].mean(1)
        assert torch.allclose(changes["replace", "informative"][:, 1], expected, atol=1e-6)
        contrast = diagonal_contrast(changes["replace", "informative"], batch.concepts, task.concept_names)
        row = contrast.iloc[0]
        assert row.ci_low <= row.diagonal_minus_row <= row.ci_high
        assert abs(row.diagonal_minus_row - (row.diagonal - row.off_diagonal_mean)) < 1e-9

    def test_pruning_a_head_matches_zeroing_its_weights(self):
        model, task, batch = _tiny()
        table = head_importance(model, batch, task.concept_names, from_points=1)
        assert len(table) == 2 * 2 * 4
        row = table[(table["block"] == 1) & (table["head"] == 0)]
        proj = model.blocks[1].attn.out_proj
        with torch.no_grad():
            proj.weight[:, :8] = 0.0  # the input columns of head 0
        errors = (model(batch.xs, batch.ys) - batch.ys)[:, 1:].pow(2).mean(1)
        expected = torch.stack([errors[batch.concepts == c].mean() for c in range(4)])
        assert torch.allclose(torch.tensor(row.loss_change.values + row.clean_loss.values, dtype=torch.float32),
                              expected, atol=1e-5)


def test_moments_from_per_basis_td():
    """(a) last one-cluster step (mean TD near chance) before (b) first basis >= 0.9, (c) all of them."""
    import pandas as pd

    from conceptlens.synthetic.analysis import find_moments

    curves = {"B1": [0.25, 0.3, 0.95, 0.97, 0.99], "B2": [0.25, 0.28, 0.5, 0.92, 0.98]}
    td = pd.DataFrame([{"step": 100 * i, "block": 1, "concept": c, "td": v[i]} for c, v in curves.items()
                       for i in range(5)])
    m = find_moments(td, 1, ["B1", "B2"], 0.9)
    assert (m["a"], m["b"], m["c"]) == (100, 200, 300) and m["separation_order"] == ["B1", "B2"]
    rising = td.assign(td=td.td.clip(upper=0.8))  # never separated: (a) is the last step still near chance
    m = find_moments(rising, 1, ["B1", "B2"], 0.9)
    assert (m["a"], m["b"], m["c"]) == (100, None, None)


def test_pairwise_table_shows_which_bases_share_a_cluster():
    """Two clusters {B1, B3} / {B2, B4}: pairs across clusters reach TD 1, pairs inside stay near 0.5."""
    from conceptlens.synthetic.analysis import _pairwise_table

    gen = torch.Generator().manual_seed(0)
    labels = [f"B{i % 4 + 1}" for i in range(200)]
    side = torch.tensor([0.0 if label in ("B1", "B3") else 10.0 for label in labels])
    acts = torch.randn(1, 200, 8, generator=gen)
    acts[0, :, 0] += side
    frame = _pairwise_table({500: acts}, {"a": None, "b": None, "c": None}, 0, labels, k=10)
    assert set(frame.moment) == {"end"} and set(frame.step) == {500}
    td = frame.set_index(["basis_a", "basis_b"]).td
    assert td["B1", "B2"] == 1.0 and td["B3", "B4"] == 1.0 and td["B1", "B1"] == 1.0
    assert td["B1", "B3"] < 0.75 and td["B2", "B4"] < 0.75
