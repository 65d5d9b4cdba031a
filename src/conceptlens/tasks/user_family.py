"""User task families: a folder with one file per concept, in the function-vectors format.

Each `<concept>.json` is a JSON list of `{"input": ..., "output": ...}` objects (or each
`<concept>.jsonl` one such object per line); the concept is the file name without extension and
the family is the folder name. Null (optional) pairs every input of the family with an output
drawn at random from all concepts' outputs. DECISION: inputs and outputs must be non-empty
one-line strings (the prompt format puts one demonstration per line); other keys are ignored.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from conceptlens.errors import ConceptLensError
from conceptlens.storage import expand_user
from conceptlens.tasks.family import NULL, Example, TaskFamily
from conceptlens.text_input import split_lines

SUFFIXES = (".json", ".jsonl")
FORMAT_HELP = ('each file holds a JSON list of {"input": "...", "output": "..."} objects (.json), '
               "or one such object per line (.jsonl)")


def _check_pair(item, path: Path, where: str) -> Example:
    if not isinstance(item, dict):
        raise ConceptLensError(f"{path} {where} is a {type(item).__name__}, not an object with 'input' and 'output'.",
                               FORMAT_HELP + ".")
    missing = [key for key in ("input", "output") if key not in item]
    if missing:
        raise ConceptLensError(f"{path} {where} has no {' or '.join(repr(m) for m in missing)} key "
                               f"(it has {sorted(item)}).", FORMAT_HELP + ".")
    for key in ("input", "output"):
        value = item[key]
        if not isinstance(value, str):
            raise ConceptLensError(f"{path} {where}: '{key}' is {type(value).__name__} {value!r}, not a string.",
                                   f"write every {key} as a JSON string, e.g. \"{value}\".")
        if not value.strip():
            raise ConceptLensError(f"{path} {where}: '{key}' is empty.", f"give every pair a non-empty {key}.")
        if "\n" in value or "\r" in value:
            raise ConceptLensError(f"{path} {where}: '{key}' contains a line break.",
                                   "prompts hold one demonstration per line: replace line breaks by spaces.")
    return Example(item["input"], item["output"])


def read_concept_file(path: str | Path) -> list[Example]:
    """The pairs of one `.json` (list) or `.jsonl` (one object a line) file, checked."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConceptLensError(f"{path} is not UTF-8 text (byte {exc.start} cannot be decoded).",
                               "save the file as UTF-8.") from exc
    except OSError as exc:
        raise ConceptLensError(f"cannot read {path} ({exc.strerror}).", "check the file's permissions.") from exc
    if path.suffix.lower() == ".jsonl":
        items = []
        for number, line in enumerate(split_lines(text), 1):
            if not line.strip():
                continue
            try:
                items.append((json.loads(line), f"line {number}"))
            except RecursionError as exc:
                raise ConceptLensError(f"{path} line {number} is nested too deeply to read.", FORMAT_HELP + ".") from exc
            except json.JSONDecodeError as exc:
                raise ConceptLensError(f"{path} line {number} is not valid JSON ({exc.msg}).",
                                       FORMAT_HELP + ".") from exc
    else:
        try:
            data = json.loads(text)
        except RecursionError as exc:
            raise ConceptLensError(f"{path} is nested too deeply to read.", FORMAT_HELP + ".") from exc
        except json.JSONDecodeError as exc:
            raise ConceptLensError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.",
                                   FORMAT_HELP + ".") from exc
        if not isinstance(data, list):
            raise ConceptLensError(f"{path} holds a JSON {type(data).__name__}, not a list of pairs.",
                                   FORMAT_HELP + ".")
        items = [(item, f"item {i}") for i, item in enumerate(data)]
    return [_check_pair(item, path, where) for item, where in items]


def user_family(folder: str | Path, null: bool = True, seed: int = 0, min_pairs: int = 2) -> TaskFamily:
    """Read a family folder (see the module docstring); every concept needs `min_pairs` pairs."""
    folder = expand_user(folder, "write the folder's full path.")
    if not folder.exists():
        raise ConceptLensError(f"family folder {folder} does not exist.",
                               "pass 'pos', 'bitwise' or a folder with one .json/.jsonl file per concept.")
    if not folder.is_dir():
        raise ConceptLensError(f"{folder} is a file, not a family folder.",
                               "pass the folder that holds one .json/.jsonl file per concept.")
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in SUFFIXES and not p.name.startswith("."))  # also .JSON
    if not files:
        raise ConceptLensError(f"family folder {folder} holds no .json or .jsonl files.",
                               f"add one file per concept: {FORMAT_HELP}.")
    stems = [p.stem for p in files]
    doubles = sorted({s for s in stems if stems.count(s) > 1})
    if doubles:
        raise ConceptLensError(f"concept(s) {doubles} have both a .json and a .jsonl file in {folder}.",
                               "keep one file per concept.")
    if null and NULL in stems:
        raise ConceptLensError(f"{folder} has a concept file named '{NULL}', which the Null concept would replace.",
                               "rename that file, or leave out --null.")
    concepts = {}
    for path in files:
        pairs = read_concept_file(path)
        if len(pairs) < min_pairs:
            raise ConceptLensError(f"concept '{path.stem}' ({path}) has {len(pairs)} pair(s); at least {min_pairs} "
                                   "are needed.", f"add pairs to {path.name}, or ask for fewer shots.")
        concepts[path.stem] = pairs
    if len(concepts) + int(null) < 2:
        raise ConceptLensError(f"family folder {folder} has one concept; decodability needs at least two.",
                               "add another concept file, or keep --null on.")
    instructions = {name: f"Task: {name.replace('_', ' ')}." for name in concepts}
    if null:
        inputs = list(dict.fromkeys(e.input for pairs in concepts.values() for e in pairs))
        outputs = sorted({e.output for pairs in concepts.values() for e in pairs})
        concepts[NULL] = [Example(text, random.Random(f"{seed}:{text}").choice(outputs)) for text in inputs]
        instructions[NULL] = "Answer with a random output."
    return TaskFamily(folder.resolve().name, concepts, instructions)
