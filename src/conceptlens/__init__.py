"""conceptlens: how transformers encode, and decode, the latent concept of a few-shot prompt.

Measure concept (task) decodability layer by layer, watch it emerge while a small GPT trains on
in-context regression, and test causally that the encoding drives the answer (Han et al. 2024).
"""

__version__ = "0.1.0"
