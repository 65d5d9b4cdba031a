"""`conceptlens capture` and `conceptlens decodability`: the two building blocks on their own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.table import Table

from conceptlens.cli.common import ModelFlags, console, open_model, parse_int_list, progress_bar, with_model_flags
from conceptlens.errors import ConceptLensError
from conceptlens.text_input import read_user_lines


def read_prompts(path: Path) -> list[str]:
    """One prompt per line, or JSONL with a `prompt` field (a line's `\\n` escapes are kept)."""
    if not path.exists():
        raise ConceptLensError(f"prompts file {path} does not exist.", "check the path.")
    lines = read_user_lines(path, "prompts file")
    if path.suffix == ".jsonl":
        prompts = []
        for number, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConceptLensError(f"{path} line {number} is not valid JSON ({exc.msg}).", "fix that line.") from exc
            if not isinstance(record, dict) or not isinstance(record.get("prompt"), str):
                raise ConceptLensError(f"{path} line {number} has no string field 'prompt'.",
                                       'write one {"prompt": "..."} object per line.')
            prompts.append(record["prompt"])
        lines = prompts
    if not lines:
        raise ConceptLensError(f"{path} holds no prompts.", "write one prompt per line.")
    return lines


def read_labels(path: Path) -> list:
    if not path.exists():
        raise ConceptLensError(f"labels file {path} does not exist.", "check the path.")
    if path.suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as exc:  # object arrays (pickles) and damaged files
            raise ConceptLensError(f"{path} is not a plain .npy array of labels ({exc}).",
                                   "save the labels with numpy.save as ints or strings, or as a text file.") from exc
        if array.ndim != 1:
            raise ConceptLensError(f"{path} holds labels shaped {array.shape}; one label per prompt (1-D) is needed.",
                                   "save a 1-D array of labels, one per activation row.")
        return array.tolist()
    return [line.strip() for line in read_user_lines(path, "labels file")]


@with_model_flags()
def capture(
    prompts: Path = typer.Option(..., help="text file (one prompt per line) or JSONL with a 'prompt' field"),
    out: Path = typer.Option(..., help="output .safetensors: 'activations' [layers, prompts, d_model] and 'layers'"),
    layers: str = typer.Option("all", help="'all' or comma-separated indices (resid_post: HF hidden-state indices)"),
    component: str = typer.Option("resid_post", help="resid_post | resid_pre | attn_out | mlp_out | head_out"),
    position: str = typer.Option("last", help="'last' or a token index counted in the unpadded prompt (negative from the end)"),
    batch_size: int = typer.Option(32, min=1),
    *, model_flags: ModelFlags,
) -> None:
    """Capture activations of every prompt at one token, for the chosen layers."""
    from conceptlens.activations.capture import capture_activations, encode_prompts

    texts = read_prompts(prompts)
    try:
        index = -1 if position == "last" else int(position)
    except ValueError as exc:
        raise ConceptLensError(f"position '{position}' is not 'last' or an integer.", "use --position last.") from exc
    if out.suffix != ".safetensors":
        raise ConceptLensError(f"--out {out} must end in .safetensors.", "e.g. --out acts.safetensors.")
    from conceptlens.out_paths import check_output_file, check_output_folder

    check_output_file(out, inputs=(prompts,))
    check_output_folder(Path(str(out) + ".parts"))  # where the shards go while it runs
    layer_list = parse_int_list(layers)
    lm = open_model(model_flags.spec())
    from conceptlens.activations.capture import component_points

    component_points(lm.layout, component, layer_list)  # validate before any work
    encoded = encode_prompts(lm.tokenizer, texts, getattr(lm.model.config, "max_position_embeddings", None))
    with progress_bar() as bar:
        layer_ids, path = capture_activations(lm.model, lm.layout, encoded, positions=[index] * len(encoded),
                                              layers=layer_list, component=component, batch_size=batch_size,
                                              pad_id=lm.tokenizer.pad_token_id, out=out, model_name=model_flags.model,
                                              progress=bar)
    console.print(f"wrote {path}: {len(layer_ids)} layers x {len(texts)} prompts ({component}, position {position})")


def _passes(array, layer_ids, label_list: list, k: int, n_boot: int, seed: int, pairwise_layer: int | None):
    """TD, bootstrap intervals, held-out layer choice, shuffled control and pairwise TD, with one bar."""
    from conceptlens.decodability import (bootstrap_ci, heldout_layer_choice, pairwise_decodability,
                                          shuffled_control, task_decodability)

    with progress_bar(transient=True) as bar:  # five passes over the activations; large inputs take minutes
        task = bar.add_task("decodability", total=5, info="TD per layer")
        result = task_decodability(array, label_list, k=k, layers=layer_ids)
        bar.update(task, advance=1, info="bootstrap intervals")
        ci = bootstrap_ci(result, n_boot=n_boot, seed=seed)
        bar.update(task, advance=1, info="held-out layer choice")
        # the held-out choice needs k + 1 points of every concept in each half; otherwise it is left out
        halves_fit = min(np.unique(np.asarray(label_list), return_counts=True)[1]) >= 2 * (k + 1)
        heldout = heldout_layer_choice(array, label_list, k=k, seed=seed, layers=result.layers) if array.ndim == 3 and halves_fit else None
        bar.update(task, advance=1, info="shuffled-label control")
        control = shuffled_control(array, label_list, k=k, seed=seed, layers=result.layers)
        bar.update(task, advance=1, info="pairwise TD")
        best_index = result.layers.index(result.best_layer)
        pair_index = best_index if pairwise_layer is None else result.layers.index(pairwise_layer) if pairwise_layer in result.layers else None
        if pair_index is None:
            raise ConceptLensError(f"--pairwise-layer {pairwise_layer} is not among the layers {result.layers}.",
                                   "choose one of those layers.")
        points = array if array.ndim == 2 else array[pair_index]
        pairwise = pairwise_decodability(points, label_list, k=k)
        bar.update(task, advance=1, info="")
    return result, ci, heldout, control, pair_index, pairwise


def decodability(
    acts: Path = typer.Argument(..., help=".safetensors (from capture) or .npy, [layers, N, d] or [N, d]"),
    labels: Path = typer.Argument(..., help="text file with one label per line, or .npy"),
    k: int = typer.Option(10, help="neighbours in the leave-one-out vote"),
    out: Optional[Path] = typer.Option(None, help="write the result as JSON here"),
    pairwise_layer: Optional[int] = typer.Option(None, help="layer of the pairwise matrix (default: best layer)"),
    n_boot: int = typer.Option(1000, help="bootstrap resamples for the 95% intervals"),
    seed: int = typer.Option(0),
) -> None:
    """Leave-one-out kNN concept decodability (TD) per layer and concept, with intervals."""
    from conceptlens.activations.capture import load_activations
    from conceptlens.out_paths import check_output_file
    from conceptlens.storage import write_json

    if out is not None:
        check_output_file(out, inputs=(acts, labels))  # before any work: never the input itself, never a folder
    if k < 1:
        raise ConceptLensError(f"--k must be a positive integer, got {k}.", "use e.g. --k 10.")
    if n_boot < 1:
        raise ConceptLensError(f"--n-boot must be a positive integer, got {n_boot}.", "use e.g. --n-boot 1000.")
    array, layer_ids = load_activations(acts)
    label_list = read_labels(labels)
    result, ci, heldout, control, pair_index, pairwise = _passes(array, layer_ids, label_list, k, n_boot, seed,
                                                                 pairwise_layer)
    best_index = result.layers.index(result.best_layer)
    table = Table(title=f"TD (k={k}, chance {result.chance:.3f})")
    table.add_column("layer"), table.add_column("mean TD"), table.add_column("95% CI"), table.add_column("shuffled")
    for li, layer in enumerate(result.layers):
        table.add_row(str(layer), f"{result.mean[li]:.3f}", f"[{ci[li, 0]:.3f}, {ci[li, 1]:.3f}]", f"{control[li]:.3f}")
    console.print(table)
    console.print(f"best layer {result.best_layer} (TD {result.mean[best_index]:.3f})"
                  + (f"; held-out choice: layer {heldout['best_layer_heldout']}, TD {heldout['td_heldout']:.3f}" if heldout else ""))
    if out:
        per_class = result.per_class_matrix
        write_json(out, {
            "k": k, "chance": result.chance, "concepts": [str(c) for c in result.concepts],
            "layers": [{"layer": layer, "mean": float(result.mean[li]),
                        "per_class": {str(c): float(per_class[li, ci_]) for ci_, c in enumerate(result.concepts)},
                        "ci95": [float(ci[li, 0]), float(ci[li, 1])], "shuffled_control": float(control[li])}
                       for li, layer in enumerate(result.layers)],
            "best_layer": result.best_layer, "heldout": heldout,
            "pairwise": {"layer": result.layers[pair_index], "concepts": [str(c) for c in pairwise.index],
                         "matrix": pairwise.values.tolist()},
        })
        console.print(f"wrote {out}")


def register(app: typer.Typer) -> None:
    app.command(help="Capture activations of prompts at one token for chosen layers (safetensors).")(capture)
    app.command(help="Concept decodability (leave-one-out kNN TD) per layer from saved activations.")(decodability)
