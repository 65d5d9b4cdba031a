"""One name for every task family: "pos", "bitwise", or the path of a user family folder.

`load_family(name, split)` returns the split the study runs on (default "test"; "train" is for
finetuning, "all" for both). A built-in name that is also a folder here is refused as ambiguous
(`./pos` or `builtin:pos` says which). DECISION: a user folder splits per concept, 80/20, by seed, like
the built-in families, so finetuning never trains on the prompts the study reports.
"""

from __future__ import annotations

import os
from pathlib import Path

from conceptlens.errors import ConceptLensError
from conceptlens.tasks.family import TaskFamily

BUILTIN = ("pos", "pos-synthetic", "bitwise")
PREFIX = "builtin:"  # `builtin:pos`: the built-in family even where a folder ./pos exists
SPLITS = ("train", "test", "all")


def load_family(name: str, split: str = "test", seed: int = 0, null: bool = True) -> TaskFamily:
    """The `split` of family `name` ("pos", "bitwise" or a folder of concept files)."""
    if split not in SPLITS:
        raise ConceptLensError(f"unknown split '{split}'.", f"use one of {', '.join(SPLITS)}.")
    if name.startswith(PREFIX) and name[len(PREFIX):] in BUILTIN:
        name = name[len(PREFIX):]  # the built-in family, whatever the current folder holds
    elif name in BUILTIN and os.path.lexists(name):
        raise ConceptLensError(f"family '{name}' names both the built-in family and ./{name} in the current folder.",
                               f"pass family=./{name} for your folder, or family={PREFIX}{name} for the built-in one.")
    if name in ("pos", "pos-synthetic"):
        from conceptlens.tasks.pos import pos_family

        # "pos": real sentences (World English Bible, data/pos_web). "pos-synthetic": the generated
        # grammar corpus (data/pos), a control whose TD the answer vocabulary explains (issue 14).
        return pos_family(split=split, seed=seed, null=null, source="web" if name == "pos" else "synthetic")
    if name == "bitwise":
        from conceptlens.tasks.bitwise import bitwise_family

        family = bitwise_family(seed=seed, null=null)
    elif name.startswith((".", "~")) or "/" in name or "\\" in name or Path(name).exists():
        from conceptlens.tasks.user_family import user_family

        family = user_family(name, null=null, seed=seed)
    else:
        raise ConceptLensError(f"unknown task family '{name}'.",
                               f"use one of {', '.join(BUILTIN)}, or the path of a folder with one "
                               ".json/.jsonl file of input/output pairs per concept.")
    if split == "all":
        return family
    train, test = family.split(seed)
    return train if split == "train" else test
