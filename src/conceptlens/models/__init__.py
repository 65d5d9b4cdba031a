"""Model loading: the embedded SmolLM2 default, local HF folders and hub ids."""

from conceptlens.models.loader import LoadedModel, load_model

__all__ = ["LoadedModel", "load_model"]
