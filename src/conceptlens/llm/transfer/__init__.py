"""Task-vector transfer beside TD on every layer: is a decodable concept also usable? (Hendel et al. 2023)"""

from conceptlens.llm.transfer.run import VARIANTS, run_transfer

__all__ = ["VARIANTS", "run_transfer"]
