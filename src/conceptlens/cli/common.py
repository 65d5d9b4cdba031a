"""What every command shares: the console and progress bars (from the library), model options, int lists."""

from __future__ import annotations

from conceptlens.progress import console, progress_bar  # noqa: F401  (the library's own, re-exported)


def parse_int_list(text: str | None) -> list[int] | None:
    """'1,4,10' -> [1, 4, 10]; None or 'all' -> None."""
    from conceptlens.errors import ConceptLensError

    if text is None or text.strip().lower() == "all":
        return None
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise ConceptLensError(f"'{text}' is not a comma-separated list of integers.", "write e.g. 1,4,10.") from exc
    if not values:
        raise ConceptLensError(f"'{text}' names no integer (an empty list).", "write e.g. 1,4,10.")
    return values


# ---- how a model is loaded: the same options, with the same meaning, on every command ----------
import typer  # noqa: E402

MODEL = typer.Option("smollm2-135m", help="embedded name (smollm2-135m), local HF folder, or hub id")
REVISION = typer.Option(None, help="hub revision (branch, tag or commit)")
DTYPE = typer.Option("float32", help="float32 | bfloat16 | float16 | auto")
DEVICE = typer.Option(None, help="cpu, cuda, cuda:1, mps ... (default: where the weights load)")
DEVICE_MAP = typer.Option(None, help="'auto' to spread a large model over all devices (accelerate)")
LOAD_IN = typer.Option(None, "--load-in", help="8bit | 4bit quantised weights (needs bitsandbytes and a GPU)")
TRUST_REMOTE_CODE = typer.Option(False, help="run code shipped with the model (only for models you trust)")


def model_spec(model: str, revision=None, dtype: str = "float32", device=None, device_map=None, load_in=None,
               trust_remote_code: bool = False):
    """The shared command-line options above as a `ModelSpec`."""
    from conceptlens.specs import ModelSpec, build

    return build(ModelSpec, name=model, revision=revision, dtype=dtype, device=device, device_map=device_map,
                 load_in=load_in, trust_remote_code=trust_remote_code)


def open_model(spec):
    """Load the model a `ModelSpec` names (the one loader of every command)."""
    from conceptlens.models.from_spec import load_model

    return load_model(spec)
