"""Part 1 of the paper: train small GPTs on in-context regression mixtures and watch concept
encoding (decodability, clusters) and decoding (per-basis error) emerge together.

`train(load_config("quick"), "runs/quick")`, then `analyze("runs/quick")`.
"""

from conceptlens.synthetic.config import RunConfig, load_config
from conceptlens.synthetic.train import train


def analyze(run_dir, **options) -> dict:
    """See `conceptlens.synthetic.analysis.analyze` (imported lazily: it pulls in umap)."""
    from conceptlens.synthetic.analysis import analyze as _analyze

    return _analyze(run_dir, **options)


__all__ = ["RunConfig", "load_config", "train", "analyze"]
