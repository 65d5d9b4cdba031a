"""Library errors name parameters (`prompts_per_concept=50`, `` `out` ``); the CLI prints flags.

One table maps a parameter to the flag that sets it; `as_flags` rewrites a message for the
terminal. DECISION: only the two marked forms are rewritten (`name=value` and a name in
backticks), so prose that happens to contain a parameter's name is left alone.
"""

from __future__ import annotations

import re

# parameter -> flag, for every parameter a library message may name (the same name on every command)
FLAGS: dict[str, str] = {name: "--" + name.replace("_", "-") for name in (
    "model", "revision", "revisions", "dtype", "device", "device_map", "load_in", "trust_remote_code",
    "family", "shots", "prompts_per_concept", "seed", "split", "null", "state_concept", "k", "batch_size",
    "layer", "layers", "component", "position", "replicates", "mode", "from_run", "separator", "answer_prefix",
    "method", "rank", "alpha", "dropout", "train_samples", "epochs", "lr", "resume", "before_run",
    "checkpoint_every", "evaluations", "out", "n_boot", "pairwise_layer", "only", "config", "address",
    "num_cpus", "ship_code", "threads", "fit_format", "means_per_concept", "cross_at", "max_sweep_layers", "models",
    "families", "interventions", "intervention_prompts", "prompts_per_query", "seeds",
)}
FLAGS.update({"layer_list": "--layers", "out_dir": "--out", "families": "--family"})

_ASSIGNED = re.compile(r"\b([a-z][a-z0-9_]*)=(?!=)")
_QUOTED = re.compile(r"`([a-z][a-z0-9_]*)`")


def as_flags(message: str | None) -> str | None:
    """`use prompts_per_concept=50` -> `use --prompts-per-concept 50`; `` `out` `` -> `--out`."""
    if not message:
        return message

    def assigned(match: re.Match) -> str:
        flag = FLAGS.get(match.group(1))
        if flag is None:
            return match.group(0)
        if match.string[match.end():match.end() + 4] in ("True", "true"):
            return flag + "\x00"
        return flag + " "

    message = _ASSIGNED.sub(assigned, message)
    message = re.sub("\x00(True|true)", "", message)
    return _QUOTED.sub(lambda m: FLAGS.get(m.group(1), m.group(0)), message)
