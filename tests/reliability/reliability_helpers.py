"""Helpers of the reliability matrix (imported by its tests and conftest): a tiny local model folder,
the real CLI in a subprocess, and which commands exist yet.

The tiny model is a random Llama (hidden 32, 2 layers, context 128) saved with the SmolLM2
tokenizer (vocabulary 49152), so commands exercise real tokenisation yet run in well under a second.
"""

from __future__ import annotations

import importlib.util
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
CONTEXT = 128


def _load_fault_inject():
    if "fault_inject" in sys.modules:
        return sys.modules["fault_inject"]
    spec = importlib.util.spec_from_file_location("fault_inject", ROOT / "scripts" / "fault_inject.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["fault_inject"] = module
    spec.loader.exec_module(module)
    return module


fault_inject = _load_fault_inject()


def save_tiny_llama(folder: Path, seed: int = 0, layers: int = 2) -> Path:
    """A random Llama with the SmolLM2 tokenizer, written with `save_pretrained` (safetensors)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from conceptlens.models.embedded import embedded_folder

    tokenizer = AutoTokenizer.from_pretrained(str(embedded_folder("smollm2-135m")))
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=CONTEXT,
                         tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # larger weights than HF's 0.02 init, so layers and concepts differ visibly
        for param in model.parameters():
            if param.dim() >= 2:
                param.normal_(0, 0.2)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


def run_cli(*args: str, timeout: float = 300, env: dict | None = None) -> CliResult:
    """Run the installed `conceptlens` console script in a subprocess (CPU, one thread, offline)."""
    proc = fault_inject.run([fault_inject.conceptlens_bin(), *map(str, args)], timeout=timeout,
                            env=env or fault_inject.cli_env())
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def registered(*command: str) -> bool:
    """Whether `conceptlens COMMAND...` exists yet (commands land while the matrix is written)."""
    import typer.main

    from conceptlens.cli.main import app

    group = typer.main.get_command(app)
    for name in command:
        commands = getattr(group, "commands", {})
        if name not in commands:
            return False
        group = commands[name]
    return True


def needs(*command: str):
    """Skip marker for a command that has not landed yet."""
    return pytest.mark.skipif(not registered(*command), reason=f"`conceptlens {' '.join(command)}` not there yet")


def assert_clean_error(result: CliResult, expect: str | None = None) -> None:
    """Exit code 2, one `error:` and one `fix:` line, no traceback; `expect` appears in the message."""
    text = result.stdout + result.stderr
    assert "Traceback" not in text, text[-3000:]
    assert result.code == 2, f"exit code {result.code}:\n{text[-3000:]}"
    assert text.count("error:") == 1 and text.count("fix:") == 1, text[-3000:]
    if expect is not None:
        flat = " ".join(text.split())
        assert expect.lower() in flat.lower(), f"{expect!r} not in:\n{text[-3000:]}"


def write_family(folder: Path, words: int = 30) -> Path:
    """A user family folder: three concepts over the same random words (upper case, reversed, first letter)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    pool = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 7))) for _ in range(words)]
    for name, fn in (("upper", str.upper), ("reverse", lambda s: s[::-1]), ("first", lambda s: s[0])):
        (folder / f"{name}.json").write_text(json.dumps([{"input": w, "output": fn(w)} for w in pool]))
    return folder
