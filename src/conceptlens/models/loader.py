"""One loader for every model the toolkit accepts.

`load_model("smollm2-135m")` (embedded, offline), a local HF folder, or a hub id with an optional
revision. Weights load as safetensors only (a local folder is checked first, `models.weights`;
pickled weights only with `allow_pickle_weights`); `trust_remote_code` only when the caller asks (and a
warning says so); `device_map="auto"` spreads a large model over devices through accelerate.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from conceptlens.errors import ConceptLensError
from conceptlens.hooks.components import ModelLayout, layout_for
from conceptlens.models.embedded import EMBEDDED, embedded_folder
from conceptlens.models.weights import check_weight_files
from conceptlens.storage import expand_user

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "auto": "auto"}


@dataclass
class LoadedModel:
    """A causal LM with its tokenizer (left padding) and resolved canonical layout."""

    name: str
    model: torch.nn.Module
    tokenizer: object
    layout: ModelLayout

    @property
    def device(self) -> torch.device:
        return input_device(self.model)

    @property
    def n_layers(self) -> int:
        return self.layout.n_layers


def input_device(model: torch.nn.Module) -> torch.device:
    """Where input ids must go: the embeddings' device (cpu when accelerate offloaded them to meta)."""
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    weight = getattr(embeddings, "weight", None)
    device = weight.device if weight is not None else next(model.parameters()).device
    return torch.device("cpu") if device.type == "meta" else device


def resolve_source(name: str) -> tuple[str, bool]:
    """Return (path or hub id, is_local)."""
    if name in EMBEDDED:
        check_cache(name)
        return str(embedded_folder(name)), True
    path = expand_user(name, "write the model folder's full path.")
    if path.exists():
        if not (path / "config.json").exists():
            raise ConceptLensError(f"{path} is not a HuggingFace model folder (no config.json).",
                                   "point --model at a folder written by save_pretrained, or use 'smollm2-135m'.")
        return str(path), True
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ConceptLensError(f"model folder {name} does not exist.", "check the path, or use 'smollm2-135m'.")
    return name, False


def check_cache(name: str) -> None:
    """Fail at once (not after a 35-50 s conversion) when an embedded model must be converted into
    a cache folder that cannot be written: `CONCEPTLENS_CACHE` naming a file, or a read-only folder."""
    from conceptlens.models.embedded import cache_dir
    from conceptlens.out_paths import folder_problem

    target = cache_dir() / name
    if (target / "model.safetensors").exists() and (target / "config.json").exists():
        return  # converted already: only read
    problem = folder_problem(cache_dir())
    if problem:
        raise ConceptLensError(f"the embedded model '{name}' is converted once into the cache {cache_dir()}, but "
                               f"{problem}.", "point CONCEPTLENS_CACHE at a folder you may write (or unset it for "
                                              "~/.cache/conceptlens).")


def check_remote_code(folder: str, trust_remote_code: bool) -> None:
    """A local folder whose config names code of its own (`auto_map`) for a model transformers does not know."""
    import json

    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    if trust_remote_code:
        return
    try:
        config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return  # transformers names a broken config.json itself
    if isinstance(config, dict) and config.get("auto_map") and config.get("model_type") not in CONFIG_MAPPING_NAMES:
        raise ConceptLensError(f"{folder} ships its own model code (auto_map in config.json, model type "
                               f"'{config.get('model_type')}'), which runs only when you allow it.",
                               "if you trust that code, allow it with `trust_remote_code`; otherwise use another model.")


def check_hub_reachable(repo_id: str, revision: str | None = None, timeout: float = 5.0) -> None:
    """Fail at once, not after ~50 s of retries, when a hub id is neither cached nor downloadable.

    A cached id (its config.json in the local HuggingFace cache), HF_HUB_OFFLINE=1 (transformers then
    fails fast itself) or a proxy setting pass; otherwise one TCP connection to the hub endpoint decides.
    """
    import socket
    from urllib.parse import urlparse
    from urllib.request import getproxies

    from huggingface_hub import constants, try_to_load_from_cache

    try:
        if isinstance(try_to_load_from_cache(repo_id, "config.json", revision=revision), str):
            return
    except ValueError:  # not a valid repo id: let transformers give its own message
        return
    if constants.HF_HUB_OFFLINE or getproxies():
        return  # behind a proxy (environment or system) a direct connection proves nothing
    endpoint = urlparse(constants.ENDPOINT)
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:  # the first address only: one timeout in all
            probe.settimeout(timeout)
            probe.connect(address)
    except OSError as exc:
        raise ConceptLensError(f"'{repo_id}' is not in the local HuggingFace cache and {host} cannot be reached ({exc}).",
                               "download it on a machine with internet (save_pretrained) and pass the folder with "
                               "--model /path/to/folder, or use the embedded default --model smollm2-135m.") from exc


def load_model(name: str = "smollm2-135m", revision: str | None = None, dtype: str = "float32",
               device: str | None = None, device_map: str | None = None, load_in: str | None = None,
               trust_remote_code: bool = False, allow_pickle_weights: bool = False) -> LoadedModel:
    """Load a causal LM and its tokenizer; see the module docstring for what `name` may be."""
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    if dtype not in DTYPES:
        raise ConceptLensError(f"unknown dtype '{dtype}'.", f"use one of {', '.join(DTYPES)}.")
    if load_in not in (None, "8bit", "4bit"):
        raise ConceptLensError(f"unknown --load-in '{load_in}'.", "use 8bit or 4bit (or leave it out for full weights).")
    source, local = resolve_source(name)
    if revision and local:  # a local folder has one set of weights: the revision would be silently ignored
        raise ConceptLensError(f"revision '{revision}' was given for the local model {name}, which has no revisions.",
                               "drop the revision, or pass each revision's own folder (e.g. --revisions /ckpt/step1000,"
                               "/ckpt/step2000).")
    if trust_remote_code:
        warnings.warn(f"trust_remote_code is on: code shipped with {name} will run on this machine.", stacklevel=2)
    if local:
        check_weight_files(source, allow_pickle_weights)
        check_remote_code(source, trust_remote_code)
    kwargs: dict = {"dtype": DTYPES[dtype], "trust_remote_code": trust_remote_code,
                    "use_safetensors": None if allow_pickle_weights else True}
    if revision and not local:
        kwargs["revision"] = revision
    if device_map:
        kwargs["device_map"] = device_map
    if load_in in ("8bit", "4bit"):
        try:
            from transformers import BitsAndBytesConfig
            import bitsandbytes  # noqa: F401
        except ImportError as exc:
            raise ConceptLensError(f"--load-in {load_in} needs bitsandbytes.", "pip install bitsandbytes (GPU only).") from exc
        kwargs["quantization_config"] = BitsAndBytesConfig(**{f"load_in_{load_in}": True})
    if not local:
        check_hub_reachable(source, revision)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code,
                                                  **({"revision": revision} if revision and not local else {}))
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except ConceptLensError:
        raise
    except (OSError, ValueError, SafetensorError) as exc:
        if local:
            raise ConceptLensError(f"could not load the model folder {source}: {exc}",
                                   "check that it holds config.json, tokenizer files and *.safetensors weights.") from exc
        raise ConceptLensError(f"could not load '{name}' from the HuggingFace hub ({type(exc).__name__}).",
                               "offline or unknown id: download it elsewhere with save_pretrained and pass the local folder "
                               "with --model /path/to/folder, or use the embedded default --model smollm2-135m.") from exc
    if device and not device_map:
        model.to(device)
    model.eval()
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(name=name, model=model, tokenizer=tokenizer, layout=layout_for(model))
