"""Task-vector transfer beside TD on every layer: is a decodable concept also usable? (Hendel et al. 2023)

`run_transfer` is imported on first use, so the report can read a finished run's tables with the pure-pandas
`parting` and `report` modules without loading torch.
"""

__all__ = ["VARIANTS", "run_transfer"]


def __getattr__(name: str):
    if name in __all__:
        from conceptlens.llm.transfer import run

        return getattr(run, name)
    raise AttributeError(f"module 'conceptlens.llm.transfer' has no attribute {name!r}")
