"""`conceptlens llm transfer` and `llm ladder`: measurements beyond the paper (decodable vs. usable; scale)."""

from pathlib import Path
from typing import Optional

import typer

from conceptlens.cli.common import ModelFlags, with_model_flags
from conceptlens.storage import expand_user


# ---- transfer (task-vector transfer beside TD on every layer: decodable vs. usable) -------------


@with_model_flags()
def transfer_command(
    family: str = typer.Option(..., help="pos | bitwise | a folder of concept files (task vectors from its train split)"),
    shots: int = typer.Option(4, min=1, help="demonstrations of the k-shot prompts the task vectors come from"),
    layers: str = typer.Option("all", help="HF hidden-state layers to patch: all, or e.g. 4,8,12"),
    prompts_per_concept: int = typer.Option(50, help="test inputs per concept (each with fresh demonstrations)"),
    seed: int = typer.Option(0),
    k: int = typer.Option(10, min=1, help="neighbours in the kNN vote of TD"),
    separator: str = typer.Option(" ->", help="text between input and answer; the patch hits its last token"),
    answer_prefix: str = typer.Option(" ", help="text before each demonstration's answer"),
    fit_format: bool = typer.Option(True, help="move a whitespace-only first answer token into the separator"),
    out: Path = typer.Option(..., help="run folder for transfer.csv, td.csv, summary.json, transfer.png"),
    batch_size: int = typer.Option(16, min=1),
    *, model_flags: ModelFlags,
) -> None:
    """Patch k-shot task vectors into zero-shot prompts at every layer, beside TD: decodable vs. usable."""
    from conceptlens.cli.common import console, experiment_run, parse_int_list
    from conceptlens.experiments import transfer, transfer_families
    from conceptlens.specs import TransferSpec, build

    layer_list = parse_int_list(layers)
    spec = build(TransferSpec, family=family, shots=shots, layers="all" if layer_list is None else layer_list,
                 prompts_per_concept=prompts_per_concept, seed=seed, k=k, separator=separator,
                 answer_prefix=answer_prefix, fit_format=fit_format)
    transfer_families(spec)  # a bad family fails before the model loads
    with experiment_run(model_flags, out, "transfer", {"transfer": spec.model_dump()}) as (lm, bar):
        _, _, summary = transfer(lm, spec, out, batch_size=batch_size, progress=bar)
    main = summary["variants"]["per_query"]
    console.print(f"zero-shot {summary['zero_shot']:.2f}, ICL {summary['icl']:.2f}; best transfer layer "
                  f"{summary['best_transfer_layer']} ({main['transfer_at_best_transfer_layer']:.2f}); best TD layer "
                  f"{summary['best_td_layer']} (TD {summary['td_peak']:.2f}, transfer there "
                  f"{summary['transfer_at_best_td_layer']:.2f}); decodable, not usable: {main['decodable_not_usable']}; "
                  f"usable, not decodable: {main['usable_not_decodable']}")
    console.print(f"wrote {out}/transfer.csv, td.csv, summary.json, transfer.png ({summary['seconds']:.0f} s)")



# ---- ladder (issue 20: concept encoding across model sizes) --------------------------------------


def ladder_command(
    models: str = typer.Option(..., help="comma-separated model names, smallest first, e.g. "
                                         "smollm2-135m,gemma3-270m,qwen2.5-coder-0.5b,qwen2.5-coder-1.5b"),
    family: str = typer.Option("pos,bitwise", help="comma-separated families (pos, bitwise, folders)"),
    out: Path = typer.Option(..., help="ladder folder: one rung folder per model x family, ladder.csv/.md/.png"),
    shots: str = typer.Option("4", help="comma-separated shots, the same on every rung"),
    prompts_per_concept: int = typer.Option(50, min=1, help="50 (bfloat16): the 4-model ladder in under an hour on 2 "
                                                          "cores; a GPU run: 100"),
    seed: int = typer.Option(0),
    k: int = typer.Option(10, min=1, help="neighbours of TD's kNN vote"),
    dtype: str = typer.Option("bfloat16", help="float32 | bfloat16 | float16 | auto, the same on every rung"),
    interventions: bool = typer.Option(False, help="also the intervention test at each rung's TD peak (slower)"),
    intervention_prompts: int = typer.Option(20, min=1, help="prompts per concept of the intervention test"),
    ray: bool = typer.Option(False, help="run the rungs as tasks on a local Ray (one process per rung)"),
    address: Optional[str] = typer.Option(None, help="with --ray: a Ray cluster address (ray://head:10001)"),
) -> None:
    """The encoding study on each model of a ladder, then a scaling table and figure beside the paper's models."""
    from conceptlens.cli.common import console, parse_int_list
    from conceptlens.llm.ladder.run import run_ladder
    from conceptlens.specs import LadderSpec, build

    names = [name.strip() for name in models.split(",") if name.strip()]
    families = [name.strip() for name in family.split(",") if name.strip()]
    spec = build(LadderSpec, models=names, families=families, shots=parse_int_list(shots) or [4],
                 prompts_per_concept=prompts_per_concept, seed=seed, k=k, dtype=dtype, interventions=interventions,
                 intervention_prompts=intervention_prompts)
    table = run_ladder(spec, expand_user(out), ray=ray or address is not None, address=address)
    ours = table[table.source == "ours"]
    console.print(f"{(ours.status.isin(['done', 'cached'])).sum()} of {len(ours)} rungs finished; "
                  f"wrote {out}/ladder.csv, ladder.md, ladder.png")
