"""What every command shares: the console and progress bars (from the library), model options, int lists."""

from __future__ import annotations

import contextlib
import functools
import inspect
from dataclasses import dataclass
from typing import Optional

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


@dataclass(frozen=True)
class ModelFlags:
    """The model flags of one command as typed; `spec()` checks them into the `ModelSpec` the library takes."""

    model: str
    revision: Optional[str] = None
    dtype: str = "float32"
    device: Optional[str] = None
    device_map: Optional[str] = None
    load_in: Optional[str] = None
    trust_remote_code: bool = False

    def spec(self):
        from conceptlens.specs import ModelSpec, build

        return build(ModelSpec, name=self.model, revision=self.revision, dtype=self.dtype, device=self.device,
                     device_map=self.device_map, load_in=self.load_in, trust_remote_code=self.trust_remote_code)


# the flags `with_model_flags` adds after a command's own, in this order (--model comes first)
_LOADING_FLAGS = (("revision", Optional[str], REVISION), ("dtype", str, DTYPE), ("device", Optional[str], DEVICE),
                  ("device_map", Optional[str], DEVICE_MAP), ("load_in", Optional[str], LOAD_IN),
                  ("trust_remote_code", bool, TRUST_REMOTE_CODE))


def with_model_flags(revision: bool = True):
    """Give a typer command the shared model flags: `--model` before its own options, `--revision` (unless
    `revision=False`) to `--trust-remote-code` after them; the command receives them as `model_flags: ModelFlags`."""
    tail = [name for name, _, _ in _LOADING_FLAGS if revision or name != "revision"]

    def decorate(command):
        own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != "model_flags"]
        flag = functools.partial(inspect.Parameter, kind=inspect.Parameter.POSITIONAL_OR_KEYWORD)
        params = ([flag("model", default=MODEL, annotation=str)] + own +
                  [flag(name, default=default, annotation=kind) for name, kind, default in _LOADING_FLAGS if name in tail])

        @functools.wraps(command)
        def with_flags(**kwargs):
            flags = ModelFlags(kwargs.pop("model"), **{name: kwargs.pop(name) for name in tail})
            return command(model_flags=flags, **kwargs)

        with_flags.__signature__ = inspect.Signature(params, return_annotation=None)
        with_flags.__annotations__ = {p.name: p.annotation for p in params}  # what typer reads the types from
        return with_flags

    return decorate


def open_model(spec):
    """Load the model a `ModelSpec` names (the one loader of every command)."""
    from conceptlens.models.from_spec import load_model

    return load_model(spec)


def checked_run_folder(model_flags: ModelFlags, out, kind: str, settings: dict):
    """The `ModelSpec` of `model_flags` and the `RunFolder` `out` of an experiment of `kind`, its record the model
    and `settings`; a folder holding another run is refused here, before the model loads."""
    from conceptlens.runs import RunFolder

    spec = model_flags.spec()
    run_folder = RunFolder(out, kind, {"model": spec.model_dump(), **settings})
    run_folder.check()
    return spec, run_folder


@contextlib.contextmanager
def experiment_run(model_flags: ModelFlags, out, kind: str, settings: dict):
    """Check the run folder (`checked_run_folder`), load the model, then hold the folder and a progress bar
    while the experiment writes into it: `with experiment_run(...) as (lm, bar): ...`."""
    spec, run_folder = checked_run_folder(model_flags, out, kind, settings)
    lm = open_model(spec)
    with run_folder, progress_bar() as bar:
        yield lm, bar
