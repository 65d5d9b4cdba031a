"""The one way a command loads its model: `load_model(ModelSpec(...))`.

Every option of `ModelSpec` reaches the loader with the same meaning on every path (CLI, sweep
cells, `reproduce`). DECISION: a sweep worker that was given a GPU uses it unless the spec names a
device or a device map (`on_gpu_if_free`).
"""

from __future__ import annotations

from conceptlens.models.loader import LoadedModel
from conceptlens.models.loader import load_model as _load
from conceptlens.specs import ModelSpec


def load_model(spec: ModelSpec) -> LoadedModel:
    """The model and tokenizer `spec` names, loaded as it says."""
    return _load(spec.name, revision=spec.revision, dtype=spec.dtype, device=spec.device, device_map=spec.device_map,
                 load_in=spec.load_in, trust_remote_code=spec.trust_remote_code)


def on_gpu_if_free(spec: ModelSpec) -> ModelSpec:
    """`spec` on `cuda` when this process sees a GPU and the spec names no device or device map."""
    import torch

    if spec.device is None and spec.device_map is None and torch.cuda.is_available():
        return spec.model_copy(update={"device": "cuda"})
    return spec
