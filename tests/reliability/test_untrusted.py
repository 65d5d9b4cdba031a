"""Untrusted files: nothing a user hands over is unpickled, evaluated, or allowed to write elsewhere.

The package source is scanned (by syntax tree, so docstrings that *say* "no pickle" do not count)
for pickle, eval/exec, unsafe torch.load/np.load/yaml.load, and literal `trust_remote_code=True`.
Then booby-trapped files (pickles whose unpickling would create a marker file) go to every
reader; the marker must never appear. Remote code needs the explicit flag and warns. Paths that
come from config files (a sweep's python cell, a synthetic run's name) cannot write outside
the run folder.
"""

from __future__ import annotations

import ast
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import conceptlens
from conceptlens.errors import ConceptLensError
from reliability_helpers import assert_clean_error

PACKAGE = Path(conceptlens.__file__).parent
SOURCES = sorted(PACKAGE.rglob("*.py"))
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def _call_name(node: ast.Call) -> str:
    func, parts = node.func, []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    parts.append(func.id if isinstance(func, ast.Name) else "?")  # `f().eval()` is "?.eval", not eval
    return ".".join(reversed(parts))


def _keyword(node: ast.Call, name: str):
    for kw in node.keywords:
        if kw.arg == name:
            return kw.value
    return None


def _is_const(value, expected) -> bool:
    return isinstance(value, ast.Constant) and value.value is expected


def unsafe_calls(source: str, filename: str = "<source>") -> list[str]:
    """Every unsafe construct in `source`, as 'line: what'."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            found += [f"{line}: import {a.name}" for a in node.names if a.name.split(".")[0] in UNSAFE_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in UNSAFE_MODULES:
            found.append(f"{line}: from {node.module} import")
        elif isinstance(node, ast.Call):
            name = _call_name(node)
            last = name.rsplit(".", 1)[-1]
            if name in ("eval", "exec", "compile", "__import__", "builtins.eval", "builtins.exec"):
                found.append(f"{line}: {name}(")
            elif name == "torch.load" and not _is_const(_keyword(node, "weights_only"), True):
                found.append(f"{line}: torch.load without weights_only=True")
            elif name in ("np.load", "numpy.load") and not _is_const(_keyword(node, "allow_pickle"), False):
                found.append(f"{line}: {name} without allow_pickle=False")
            elif name in ("yaml.load", "yaml.unsafe_load", "yaml.full_load", "yaml.load_all", "yaml.unsafe_load_all"):
                found.append(f"{line}: {name} (use yaml.safe_load)")
            elif last in ("read_pickle", "to_pickle"):
                found.append(f"{line}: {name}")
            trust = _keyword(node, "trust_remote_code")
            if trust is not None and not (isinstance(trust, ast.Name) or _is_const(trust, False)
                                          or isinstance(trust, ast.Attribute)):
                found.append(f"{line}: trust_remote_code={ast.unparse(trust)} (only the caller's flag may pass)")
            if _is_const(_keyword(node, "shell"), True):
                found.append(f"{line}: shell=True")
    return found


def test_the_scanner_finds_what_it_looks_for():
    bad = ("import pickle\nfrom dill import loads\nx = eval('1')\nexec('y=2')\ntorch.load(p)\n"
           "torch.load(p, weights_only=False)\nnp.load(p)\nnumpy.load(p, allow_pickle=True)\nyaml.load(t)\n"
           "f(trust_remote_code=True)\npd.read_pickle(p)\nsubprocess.run(c, shell=True)\n")
    assert len(unsafe_calls(bad)) == 12
    good = ("model.eval()\nload(p).eval()\ntorch.load(p, weights_only=True)\nnp.load(p, allow_pickle=False)\nyaml.safe_load(t)\n"
            "f(trust_remote_code=trust_remote_code)\n'''no pickle is ever involved; eval('x')'''\n")
    assert unsafe_calls(good) == []


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(PACKAGE)) for p in SOURCES])
def test_package_source_has_no_unsafe_loading(path: Path):
    assert unsafe_calls(path.read_text(), str(path)) == []


def test_scripts_have_no_unsafe_loading():
    root = PACKAGE.parents[1]
    found = {str(p.relative_to(root)): unsafe_calls(p.read_text(), str(p)) for p in sorted((root / "scripts").rglob("*.py"))}
    assert {k: v for k, v in found.items() if v} == {}


# ---- booby-trapped files ------------------------------------------------------------------------------
class _Trap:
    """Unpickling this creates `marker`: proof that a pickle was executed."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _traps(folder: Path) -> tuple[Path, dict[str, Path]]:
    marker = folder / "PWNED"
    files = {}
    files["torch.pt"] = folder / "acts.pt"
    torch.save({"activations": _Trap(marker)}, files["torch.pt"])
    files["pickle-as-safetensors"] = folder / "acts.safetensors"
    files["pickle-as-safetensors"].write_bytes(pickle.dumps({"activations": _Trap(marker)}))
    files["object.npy"] = folder / "acts.npy"
    np.save(files["object.npy"], np.array([_Trap(marker)] * 4, dtype=object), allow_pickle=True)
    assert not marker.exists()
    return marker, files


@pytest.mark.parametrize("kind", ["torch.pt", "pickle-as-safetensors", "object.npy"])
def test_decodability_refuses_pickled_activations(kind: str, tmp_path: Path, cli):
    marker, files = _traps(tmp_path)
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\na\nb\n")
    result = cli("decodability", files[kind], labels, "--k", "1", "--out", tmp_path / "td.json")
    assert_clean_error(result, files[kind].name)
    assert not marker.exists(), "a pickle was executed"
    assert not (tmp_path / "td.json").exists()


def test_decodability_refuses_pickled_labels(tmp_path: Path, cli):
    marker, files = _traps(tmp_path)
    acts = tmp_path / "ok.npy"
    np.save(acts, np.zeros((4, 3), dtype=np.float32))
    result = cli("decodability", acts, files["object.npy"], "--k", "1")
    assert_clean_error(result, "acts.npy")
    assert not marker.exists()


def test_model_folder_with_only_pickled_weights_is_refused(tiny_lm: Path, tmp_path: Path):
    """A folder whose weights are `pytorch_model.bin` (a pickle) is never loaded: safetensors only."""
    from conceptlens.models import load_model

    folder = tmp_path / "model"
    shutil.copytree(tiny_lm, folder)
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "PWNED"
    torch.save({"model.embed_tokens.weight": _Trap(marker)}, folder / "pytorch_model.bin")
    with pytest.raises(ConceptLensError) as info:
        load_model(str(folder))
    assert str(folder) in str(info.value)
    assert not marker.exists(), "pickled weights were unpickled"


def test_synthetic_checkpoint_replaced_by_a_pickle_is_refused(tmp_path: Path):
    from conceptlens.safetensors_io import load_tensors

    marker = tmp_path / "PWNED"
    path = tmp_path / "step_0000010.safetensors"
    torch.save({"w": _Trap(marker)}, path)
    with pytest.raises(ConceptLensError) as info:
        load_tensors(path)
    assert path.name in str(info.value) and not marker.exists()


# ---- remote code ------------------------------------------------------------------------------------
def test_trust_remote_code_needs_the_flag_and_warns(tiny_lm: Path, monkeypatch):
    import transformers

    from conceptlens.models import load_model

    seen = []
    real = transformers.AutoModelForCausalLM.from_pretrained

    def spy(*args, **kwargs):
        seen.append(kwargs.get("trust_remote_code"))
        return real(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", spy)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no warning without the flag
        load_model(str(tiny_lm))
    with pytest.warns(UserWarning, match="trust_remote_code"):
        load_model(str(tiny_lm), trust_remote_code=True)
    assert seen == [False, True]


def test_cli_options_default_to_no_remote_code():
    """Every command that offers --trust-remote-code defaults it to False."""
    import typer.main

    from conceptlens.cli.main import app

    def walk(command, prefix=()):
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, prefix + (name,))
        for param in getattr(command, "params", []):
            if param.name == "trust_remote_code":
                yield " ".join(prefix), param.default

    found = list(walk(typer.main.get_command(app)))
    assert found, "no command offers --trust-remote-code"
    assert all(default is False for _, default in found), found


# ---- paths from config files --------------------------------------------------------------------------
def test_sweep_python_cell_cannot_write_outside_its_folder(tmp_path: Path):
    """`function: conceptlens.storage.write_text` with a `path:` setting would write anywhere: refused."""
    from conceptlens.sweep.cells import runner_for
    from conceptlens.sweep.runner import run_sweep
    from conceptlens.sweep.spec import parse_sweep

    outside = tmp_path / "outside" / "PWNED.txt"
    for function in ("conceptlens.storage.write_text", "conceptlens.storage.write_json",
                     "conceptlens.storage.append_jsonl"):
        with pytest.raises(ConceptLensError, match="out"):
            runner_for("python", function)
    spec = parse_sweep({"command": "python", "function": "conceptlens.storage.write_text",
                        "grid": {"text": ["owned"]}, "fixed": {"path": str(outside)}, "out": str(tmp_path / "sweep")})
    with pytest.raises(ConceptLensError):
        run_sweep(spec)
    assert not outside.exists() and not (tmp_path / "sweep").exists()


def test_sweep_cell_folders_stay_inside_the_sweep(tmp_path: Path):
    """Grid values with `../`, absolute paths and odd characters still give one folder name per cell."""
    from conceptlens.sweep.spec import expand, parse_sweep

    spec = parse_sweep({"command": "python", "function": "conceptlens.sweep.toy.toy_decodability",
                        "grid": {"seed": ["../../../etc", "/abs/path", "..", "a/../../b", "~root", "x\0y"]}})
    root = (tmp_path / "sweep").resolve()
    for cell in expand(spec):
        folder = (root / cell["id"]).resolve()
        assert folder.parent == root, cell["id"]
        assert cell["id"] not in (".", "..") and "/" not in cell["id"]


def test_synthetic_run_name_cannot_escape_the_run_folder(tmp_path: Path):
    """A config `name: ../../escape` is a label only: every file lands under --out."""
    from conceptlens.synthetic.config import load_config
    from conceptlens.synthetic.train import train

    out = tmp_path / "a" / "b" / "run"
    threads = torch.get_num_threads()
    try:
        train(load_config("quick", ["name=../../escape", "steps=2", "model.n_layers=1", "model.d_model=16",
                                    "model.n_heads=2", "schedule.eval_per_concept=2"]), out)
    finally:
        torch.set_num_threads(threads)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written and all(out in p.parents for p in written), [str(p) for p in written if out not in p.parents]


def test_family_concept_names_cannot_name_paths(tmp_path: Path):
    """Concept names come from file names, so they never hold a separator; `..` stems are refused or inert."""
    from conceptlens.tasks.user_family import user_family

    folder = tmp_path / "family"
    folder.mkdir()
    pairs = json.dumps([{"input": "a", "output": "b"}, {"input": "c", "output": "d"}])
    (folder / "...json").write_text(pairs)  # stem ".."
    (folder / "ok.json").write_text(pairs)
    family = user_family(folder)
    for name in family.concepts:
        assert "/" not in name and "\\" not in name
