"""conceptlens: how transformers encode, and decode, the latent concept of a few-shot prompt.

Measure concept (task) decodability layer by layer, watch it emerge while a small GPT trains on
in-context regression, and test causally that the encoding drives the answer (Han et al. 2024).

    import conceptlens as cl
    lm = cl.load_model("smollm2-135m")
    result = cl.encoding_study(lm, "bitwise", shots=[1, 4, 10])

The names below load on first use (`conceptlens.api`), so `import conceptlens` stays fast and
imports no torch; see docs/api.md.
"""

__version__ = "0.1.0"

_API = ("load_model", "load_family", "few_shot_prompts", "task_decodability", "encoding_study", "interventions",
        "finetune", "transfer", "ladder", "train_synthetic", "analyze_synthetic", "LanguageModel", "EncodingResult", "InterventionResult",
        "FinetuneResult", "SyntheticAnalysis", "ModelSpec", "EncodingStudySpec", "InterventionSpec", "FinetuneSpec",
        "PromptFormat", "Prompt", "ConceptLensError")

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        import importlib

        value = getattr(importlib.import_module("conceptlens.api"), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'conceptlens' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
