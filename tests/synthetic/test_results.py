import pandas as pd

from conceptlens.synthetic.results import SyntheticAnalysis


def test_synthetic_analysis_round_trips_through_its_files(tmp_path):
    td = pd.DataFrame({"step": [0, 0], "token": ["y", "x"], "block": [1, 1], "concept": ["B1", "B1"], "td": [0.5, 0.25]})
    frames = {name: pd.DataFrame({"a": [1, 2]}) for name in ("loss_per_basis", "pairwise_td", "patching",
                                                            "patching_diagonal", "head_importance", "baselines")}
    result = SyntheticAnalysis(moments={"a": 0, "b": None, "block": 1, "token": "y"}, decodability=td, **frames)
    files = result.save(tmp_path)
    assert "decodability.csv" in files and "umap.csv" not in files and "moments.json" in files
    back = SyntheticAnalysis.load(tmp_path)
    pd.testing.assert_frame_equal(back.decodability, td)
    assert back.moments == result.moments and back.umap.empty and back["moments"]["block"] == 1
