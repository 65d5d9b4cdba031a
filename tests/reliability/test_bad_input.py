"""Bad input, every command: exit code 2, one message that names the fix, nothing half-written.

Each row runs the real CLI entry point (`conceptlens.cli.main.main`, argv patched) on one broken
input; a few rows also run the installed console script in a subprocess. A row passes when the
exit code is 2, the output holds exactly one `error:` and one `fix:` line and no traceback, the
message names the problem, and the `--out` path (and a capture's `.parts` folder) does not exist
afterwards, or is byte-for-byte unchanged when it existed before.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from reliability_helpers import assert_clean_error, fault_inject, registered, run_cli


@dataclass
class Case:
    id: str
    args: list[str]  # placeholders: {model} {tmp} {file:NAME} {acts} {labels}
    expect: str  # a phrase the error message must contain
    out: str | None = "{tmp}/out"  # what must not be half-written
    existing_out: bool = False  # create a valid previous result first: it must stay unchanged
    command: tuple[str, ...] = field(default=())

    def __post_init__(self):
        if not self.command:
            self.command = tuple(a for a in self.args[:2] if not a.startswith("-") and "{" not in a)
            if self.command and self.command[0] not in ("synthetic", "llm"):
                self.command = self.command[:1]


def _write_inputs(tmp: Path) -> dict[str, Path]:
    """Every broken (and a few good) input file, written once per test into `tmp/in`."""
    d = tmp / "in"
    d.mkdir()
    files: dict[str, Path] = {}

    def text(name: str, content: str | bytes) -> None:
        path = d / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        files[name] = path

    text("prompts.txt", "1 -> 2\nhello ->\n")
    text("empty.txt", "\n\n")
    text("latin1.txt", "caf\xe9 ->\n".encode("latin-1"))
    text("huge.txt", "word " * 400 + "->\n")
    text("bad.jsonl", '{"prompt": "a ->"}\n{"prompt": oops}\n')
    text("labels40.txt", "\n".join(["red", "blue"] * 20) + "\n")
    text("labels39.txt", "\n".join((["red", "blue"] * 20)[:39]) + "\n")
    text("same40.txt", "red\n" * 40)
    text("few.txt", "\n".join(["red"] * 38 + ["blue"] * 2) + "\n")
    text("bad.yaml", "task: {kind: sparse\nmodel: [\n")
    text("unknown_key.yaml", "task: {kind: sparse, colour: blue}\n")
    text("wrong_type.yaml", "train: {steps: many}\n")
    text("latin1.yaml", "name: caf\xe9\n".encode("latin-1"))
    text("list.yaml", "- 1\n- 2\n")
    rng = np.random.default_rng(0)
    acts = rng.standard_normal((3, 40, 8)).astype(np.float32)
    np.save(d / "acts.npy", acts)
    files["acts.npy"] = d / "acts.npy"
    bad = acts.copy()
    bad[1, 3, 2] = np.nan
    np.save(d / "nan.npy", bad)
    files["nan.npy"] = d / "nan.npy"
    np.save(d / "flat.npy", acts[0, 0])
    files["flat.npy"] = d / "flat.npy"
    np.save(d / "objects.npy", np.array([{"a": 1}] * 40, dtype=object), allow_pickle=True)
    files["objects.npy"] = d / "objects.npy"
    torch.save({"activations": torch.from_numpy(acts)}, d / "pickled.pt")  # a pickle: must be refused
    files["pickled.pt"] = d / "pickled.pt"
    shutil.copy(d / "pickled.pt", d / "pickled.safetensors")
    files["pickled.safetensors"] = d / "pickled.safetensors"
    (d / "notamodel").mkdir()
    files["notamodel"] = d / "notamodel"
    # user task families
    fam = d / "family_ok"
    fam.mkdir()
    for name, fn in (("upper", str.upper), ("reverse", lambda s: s[::-1])):
        words = ["apple", "river", "stone", "cloud", "light", "grass", "paper", "glass", "sound", "field"]
        (fam / f"{name}.json").write_text(json.dumps([{"input": w, "output": fn(w)} for w in words]))
    files["family_ok"] = fam
    (d / "family_empty").mkdir()
    files["family_empty"] = d / "family_empty"
    one = d / "family_one_pair"
    shutil.copytree(fam, one)
    (one / "lonely.json").write_text(json.dumps([{"input": "a", "output": "b"}]))
    files["family_one_pair"] = one
    broken = d / "family_broken"
    shutil.copytree(fam, broken)
    (broken / "broken.json").write_text('[{"input": "a", "output": 3}, {"input": "b", "output": "c"}]')
    files["family_broken"] = broken
    long = d / "family_long"
    long.mkdir()
    for concept in ("first", "last"):
        (long / f"{concept}.json").write_text(json.dumps(
            [{"input": " ".join(f"w{i}{j}" for j in range(40)), "output": f"{concept}{i}"} for i in range(30)]))
    files["family_long"] = long
    sweeps = {"malformed": "command: [python\n",
              "unknown_command": "command: rm -rf\ngrid: {seed: [0]}\n",
              "empty_list": f"command: python\nfunction: {TOY}\ngrid: {{seed: []}}\n",
              "unknown_cell_key": f"command: python\nfunction: {TOY}\ngrid: {{seed: [0], colour: [red]}}\n",
              "not_mapping": "- command: python\n",
              "outside_package": "command: python\nfunction: os.system\ngrid: {command: [ls]}\n",
              "writes_anywhere": "command: python\nfunction: conceptlens.storage.write_text\n"
                                 f"grid: {{text: [x]}}\nfixed: {{path: {tmp / 'PWNED.txt'}}}\n",
              "no_out": f"command: python\nfunction: {TOY}\ngrid: {{seed: [0]}}\n",
              "unknown_key": f"command: python\nfunction: {TOY}\ngrid: {{seed: [0]}}\nretries: 3\n",
              "deep": "- " * 3000}
    for name, body in sweeps.items():
        text(f"sweep_{name}.yaml", body)
    text("sweep_latin1.yaml", "command: caf\xe9\n".encode("latin-1"))
    nonutf = d / "family_latin1"
    shutil.copytree(fam, nonutf)
    (nonutf / "accents.json").write_bytes('[{"input": "caf\xe9", "output": "x"}]'.encode("latin-1"))
    files["family_latin1"] = nonutf
    return files


TOY = "conceptlens.sweep.toy.toy_decodability"
TINY_SYN = ["--set", "steps=3", "--set", "model.n_layers=1", "--set", "model.d_model=16", "--set", "model.n_heads=2"]

# an unknown hub id: "could not load ... from the HuggingFace hub" where the hub answers, "... is not in the
# local HuggingFace cache and huggingface.co cannot be reached" where it does not (CI machines): both name it
HUB_MISS = "HuggingFace"
CASES = [
    # ---- capture --------------------------------------------------------------------------------------
    Case("capture/unknown-hub-model", ["capture", "--model", "no-such-org-xyz", "--prompts", "{file:prompts.txt}",
                                       "--out", "{tmp}/out.safetensors"], HUB_MISS, "{tmp}/out.safetensors"),
    Case("capture/missing-model-folder", ["capture", "--model", "{tmp}/nowhere/model", "--prompts", "{file:prompts.txt}",
                                          "--out", "{tmp}/out.safetensors"], "does not exist", "{tmp}/out.safetensors"),
    Case("capture/folder-without-config", ["capture", "--model", "{file:notamodel}", "--prompts", "{file:prompts.txt}",
                                           "--out", "{tmp}/out.safetensors"], "no config.json", "{tmp}/out.safetensors"),
    Case("capture/unknown-layer", ["capture", "--model", "{model}", "--prompts", "{file:prompts.txt}", "--layers", "7",
                                   "--out", "{tmp}/out.safetensors"], "layer 7 does not exist", "{tmp}/out.safetensors"),
    Case("capture/unknown-layer-keeps-old-result", ["capture", "--model", "{model}", "--prompts", "{file:prompts.txt}",
                                                    "--layers", "7", "--out", "{tmp}/out.safetensors"],
         "layer 7 does not exist", "{tmp}/out.safetensors", existing_out=True),
    Case("capture/bad-layers-spec", ["capture", "--model", "{model}", "--prompts", "{file:prompts.txt}", "--layers", "1,x",
                                     "--out", "{tmp}/out.safetensors"], "comma-separated list", "{tmp}/out.safetensors"),
    Case("capture/unknown-component", ["capture", "--model", "{model}", "--prompts", "{file:prompts.txt}",
                                       "--component", "mlp_in", "--out", "{tmp}/out.safetensors"],
         "unknown component", "{tmp}/out.safetensors"),
    Case("capture/non-utf8-prompts", ["capture", "--model", "{model}", "--prompts", "{file:latin1.txt}",
                                      "--out", "{tmp}/out.safetensors"], "not UTF-8", "{tmp}/out.safetensors"),
    Case("capture/prompt-beyond-context", ["capture", "--model", "{model}", "--prompts", "{file:huge.txt}",
                                           "--out", "{tmp}/out.safetensors"], "beyond the model's context",
         "{tmp}/out.safetensors"),
    Case("capture/position-outside-prompt", ["capture", "--model", "{model}", "--prompts", "{file:prompts.txt}",
                                             "--position", "99", "--out", "{tmp}/out.safetensors"],
         "outside a prompt", "{tmp}/out.safetensors"),
    Case("capture/out-not-safetensors", ["capture", "--model", "{model}", "--prompts", "{file:prompts.txt}",
                                         "--out", "{tmp}/out.pt"], "must end in .safetensors", "{tmp}/out.pt"),
    Case("capture/empty-prompts-file", ["capture", "--model", "{model}", "--prompts", "{file:empty.txt}",
                                        "--out", "{tmp}/out.safetensors"], "holds no prompts", "{tmp}/out.safetensors"),
    Case("capture/malformed-jsonl", ["capture", "--model", "{model}", "--prompts", "{file:bad.jsonl}",
                                     "--out", "{tmp}/out.safetensors"], "line 2 is not valid JSON", "{tmp}/out.safetensors"),
    Case("capture/unknown-dtype", ["capture", "--model", "{model}", "--prompts", "{file:prompts.txt}", "--dtype", "float8",
                                   "--out", "{tmp}/out.safetensors"], "unknown dtype", "{tmp}/out.safetensors"),
    Case("capture/unknown-load-in", ["capture", "--model", "{model}", "--prompts", "{file:prompts.txt}", "--load-in",
                                     "3bit", "--out", "{tmp}/out.safetensors"], "unknown --load-in",
         "{tmp}/out.safetensors"),
    # ---- decodability ---------------------------------------------------------------------------------
    Case("decodability/labels-wrong-length", ["decodability", "{file:acts.npy}", "{file:labels39.txt}", "--out",
                                              "{tmp}/out.json"], "39 labels for 40", "{tmp}/out.json"),
    Case("decodability/negative-k", ["decodability", "{file:acts.npy}", "{file:labels40.txt}", "--k", "-3", "--out",
                                     "{tmp}/out.json"], "--k must be a positive integer", "{tmp}/out.json"),
    Case("decodability/k-too-large", ["decodability", "{file:acts.npy}", "{file:labels40.txt}", "--k", "100", "--out",
                                      "{tmp}/out.json"], "fewer than k + 1", "{tmp}/out.json"),
    Case("decodability/nan-activations", ["decodability", "{file:nan.npy}", "{file:labels40.txt}", "--out",
                                          "{tmp}/out.json"], "NaN", "{tmp}/out.json"),
    Case("decodability/nan-keeps-old-result", ["decodability", "{file:nan.npy}", "{file:labels40.txt}", "--out",
                                               "{tmp}/out.json"], "NaN", "{tmp}/out.json", existing_out=True),
    Case("decodability/pickled-pt", ["decodability", "{file:pickled.pt}", "{file:labels40.txt}", "--out",
                                     "{tmp}/out.json"], "not a readable safetensors file", "{tmp}/out.json"),
    Case("decodability/pickle-renamed-safetensors", ["decodability", "{file:pickled.safetensors}", "{file:labels40.txt}",
                                                     "--out", "{tmp}/out.json"], "not a readable safetensors",
         "{tmp}/out.json"),
    Case("decodability/object-npy-activations", ["decodability", "{file:objects.npy}", "{file:labels40.txt}", "--out",
                                                 "{tmp}/out.json"], "not a numeric .npy", "{tmp}/out.json"),
    Case("decodability/object-npy-labels", ["decodability", "{file:acts.npy}", "{file:objects.npy}", "--out",
                                            "{tmp}/out.json"], "not a plain .npy array", "{tmp}/out.json"),
    Case("decodability/one-concept", ["decodability", "{file:acts.npy}", "{file:same40.txt}", "--out", "{tmp}/out.json"],
         "at least two concepts", "{tmp}/out.json"),
    Case("decodability/concept-with-two-points", ["decodability", "{file:acts.npy}", "{file:few.txt}", "--out",
                                                  "{tmp}/out.json"], "fewer than k + 1", "{tmp}/out.json"),
    Case("decodability/zero-bootstrap", ["decodability", "{file:acts.npy}", "{file:labels40.txt}", "--n-boot", "0",
                                         "--out", "{tmp}/out.json"], "--n-boot", "{tmp}/out.json"),
    Case("decodability/unknown-pairwise-layer", ["decodability", "{file:acts.npy}", "{file:labels40.txt}",
                                                 "--pairwise-layer", "9", "--out", "{tmp}/out.json"],
         "is not among the layers", "{tmp}/out.json"),
    Case("decodability/one-dimensional", ["decodability", "{file:flat.npy}", "{file:labels40.txt}", "--out",
                                          "{tmp}/out.json"], "[layers, N, d] or [N, d]", "{tmp}/out.json"),
    Case("decodability/missing-file", ["decodability", "{tmp}/nothing.safetensors", "{file:labels40.txt}", "--out",
                                       "{tmp}/out.json"], "does not exist", "{tmp}/out.json"),
    # ---- synthetic ------------------------------------------------------------------------------------
    Case("synthetic/malformed-yaml", ["synthetic", "train", "--out", "{tmp}/out", "--config", "{file:bad.yaml}"],
         "not valid YAML"),
    Case("synthetic/unknown-key", ["synthetic", "train", "--out", "{tmp}/out", "--config", "{file:unknown_key.yaml}"],
         "task.colour"),
    Case("synthetic/wrong-type", ["synthetic", "train", "--out", "{tmp}/out", "--config", "{file:wrong_type.yaml}"],
         "train.steps"),
    Case("synthetic/non-utf8-yaml", ["synthetic", "train", "--out", "{tmp}/out", "--config", "{file:latin1.yaml}"],
         "not UTF-8"),
    Case("synthetic/yaml-not-a-mapping", ["synthetic", "train", "--out", "{tmp}/out", "--config", "{file:list.yaml}"],
         "not a mapping"),
    Case("synthetic/unknown-config-name", ["synthetic", "train", "--out", "{tmp}/out", "--config", "tiny-typo"],
         "no config named 'tiny-typo'"),
    Case("synthetic/set-without-equals", ["synthetic", "train", "--out", "{tmp}/out", "--set", "steps"], "has no '='"),
    Case("synthetic/set-unknown-key", ["synthetic", "train", "--out", "{tmp}/out", "--set", "learning_rate=1"],
         "unknown config key"),
    Case("synthetic/set-bad-yaml-value", ["synthetic", "train", "--out", "{tmp}/out", "--set", "train.betas=[0.9"],
         "not valid YAML"),
    Case("synthetic/negative-steps", ["synthetic", "train", "--out", "{tmp}/out", "--set", "steps=-5"], "train.steps"),
    Case("synthetic/heads-do-not-divide", ["synthetic", "train", "--out", "{tmp}/out", *TINY_SYN,
                                           "--set", "model.n_heads=3"], "not divisible"),
    Case("synthetic/bases-do-not-fit", ["synthetic", "train", "--out", "{tmp}/out", *TINY_SYN,
                                        "--set", "task.basis_dim=5"], "do not fit"),
    Case("synthetic/eval-beyond-sequence", ["synthetic", "train", "--out", "{tmp}/out", *TINY_SYN,
                                            "--set", "schedule.eval_from_points=50"], "eval_from_points"),
    Case("synthetic/existing-run-without-resume", ["synthetic", "train", "--out", "{tmp}/out", *TINY_SYN],
         "already holds a run", existing_out=True),
    Case("synthetic/analyze-not-a-run", ["synthetic", "analyze", "{file:family_ok}"], "not a synthetic run folder",
         out=None),
    Case("synthetic/analyze-unknown-token", ["synthetic", "analyze", "{tmp}/out", "--token", "z"], "unknown token"),
    # ---- llm finetune ---------------------------------------------------------------------------------
    Case("finetune/bad-layers-spec", ["llm", "finetune", "--model", "{model}", "--family", "{file:family_ok}",
                                      "--layers", "middle:3", "--out", "{tmp}/out"], "layer"),
    Case("finetune/layers-beyond-model", ["llm", "finetune", "--model", "{model}", "--family", "{file:family_ok}",
                                          "--layers", "first:9", "--out", "{tmp}/out"], "layer"),
    Case("finetune/unknown-family", ["llm", "finetune", "--model", "{model}", "--family", "colours",
                                     "--layers", "first:1", "--out", "{tmp}/out"], "unknown task family"),
    Case("finetune/empty-family-folder", ["llm", "finetune", "--model", "{model}", "--family", "{file:family_empty}",
                                          "--layers", "first:1", "--out", "{tmp}/out"], "holds no .json"),
    Case("finetune/concept-with-one-pair", ["llm", "finetune", "--model", "{model}", "--family",
                                            "{file:family_one_pair}", "--layers", "first:1", "--out", "{tmp}/out"],
         "lonely"),
    Case("finetune/output-not-a-string", ["llm", "finetune", "--model", "{model}", "--family", "{file:family_broken}",
                                          "--layers", "first:1", "--out", "{tmp}/out"], "not a string"),
    Case("finetune/non-utf8-family", ["llm", "finetune", "--model", "{model}", "--family", "{file:family_latin1}",
                                      "--layers", "first:1", "--out", "{tmp}/out"], "not UTF-8"),
    # ---- llm run ---------------------------------------------------------------------------------------
    Case("run/shots-larger-than-pool", ["llm", "run", "--model", "{model}", "--family", "{file:family_ok}", "--shots", "50",
                                        "--prompts-per-concept", "22", "--out", "{tmp}/out"], "51 are needed"),
    Case("run/bad-shots-spec", ["llm", "run", "--model", "{model}", "--family", "{file:family_ok}", "--shots", "1,four",
                                "--out", "{tmp}/out"], "comma-separated list"),
    Case("run/negative-shots", ["llm", "run", "--model", "{model}", "--family", "{file:family_ok}", "--shots", "-1",
                                "--out", "{tmp}/out"], "non-negative"),
    Case("run/too-few-prompts-for-k", ["llm", "run", "--model", "{model}", "--family", "{file:family_ok}", "--shots", "1",
                                       "--prompts-per-concept", "5", "--out", "{tmp}/out"], "too few for k"),
    Case("run/unknown-split", ["llm", "run", "--model", "{model}", "--family", "{file:family_ok}", "--split", "dev",
                               "--out", "{tmp}/out"], "unknown split"),
    Case("run/unknown-family", ["llm", "run", "--model", "{model}", "--family", "colours", "--out", "{tmp}/out"],
         "unknown task family"),
    Case("run/empty-family-folder", ["llm", "run", "--model", "{model}", "--family", "{file:family_empty}",
                                     "--out", "{tmp}/out"], "holds no .json"),
    Case("run/concept-with-one-pair", ["llm", "run", "--model", "{model}", "--family", "{file:family_one_pair}",
                                       "--shots", "1", "--out", "{tmp}/out"], "lonely"),
    Case("run/prompt-beyond-context", ["llm", "run", "--model", "{model}", "--family", "{file:family_long}", "--shots",
                                       "4", "--prompts-per-concept", "22", "--out", "{tmp}/out"], "context"),
    Case("run/revision-of-a-local-model", ["llm", "run", "--model", "{model}", "--family", "{file:family_ok}", "--shots",
                                           "1", "--prompts-per-concept", "22", "--revisions", "step1000",
                                           "--out", "{tmp}/out"], "has no revisions"),
    Case("run/unknown-model", ["llm", "run", "--model", "no-such-org-xyz", "--family", "{file:family_ok}", "--shots", "1",
                               "--prompts-per-concept", "22", "--out", "{tmp}/out"], HUB_MISS),
    # ---- llm intervene ---------------------------------------------------------------------------------
    Case("intervene/unknown-layer", ["llm", "intervene", "--model", "{model}", "--family", "{file:family_ok}", "--layer",
                                     "99", "--shots", "1", "--out", "{tmp}/out"], "layer 99 does not exist"),
    Case("intervene/bad-layer-spec", ["llm", "intervene", "--model", "{model}", "--family", "{file:family_ok}",
                                      "--layer", "middle", "--out", "{tmp}/out"], "comma-separated list"),
    Case("intervene/unknown-mode", ["llm", "intervene", "--model", "{model}", "--family", "{file:family_ok}", "--mode",
                                    "swap", "--shots", "1", "--out", "{tmp}/out"], "unknown intervention mode"),
    Case("intervene/zero-replicates", ["llm", "intervene", "--model", "{model}", "--family", "{file:family_ok}",
                                       "--replicates", "0", "--shots", "1", "--out", "{tmp}/out"], "replicates"),
    Case("intervene/negative-shots", ["llm", "intervene", "--model", "{model}", "--family", "{file:family_ok}",
                                      "--shots", "-2", "--out", "{tmp}/out"], "shots must be at least 0"),
    Case("intervene/shots-larger-than-pool", ["llm", "intervene", "--model", "{model}", "--family", "{file:family_ok}",
                                              "--shots", "30", "--out", "{tmp}/out"], "30 shots need"),
    Case("intervene/missing-from-run", ["llm", "intervene", "--model", "{model}", "--family", "{file:family_ok}",
                                        "--shots", "1", "--from-run", "{tmp}/no-run", "--out", "{tmp}/out"],
         "summary.json does not exist"),
    # ---- sweep, report, compare, reproduce --------------------------------------------------------------
    Case("sweep/malformed-yaml", ["sweep", "{file:sweep_malformed.yaml}", "--out", "{tmp}/out"], "not valid YAML"),
    Case("sweep/non-utf8-yaml", ["sweep", "{file:sweep_latin1.yaml}", "--out", "{tmp}/out"], "not UTF-8"),
    Case("sweep/deeply-nested-yaml", ["sweep", "{file:sweep_deep.yaml}", "--out", "{tmp}/out"], "not valid YAML"),
    Case("sweep/not-a-mapping", ["sweep", "{file:sweep_not_mapping.yaml}", "--out", "{tmp}/out"], "YAML mapping"),
    Case("sweep/unknown-command", ["sweep", "{file:sweep_unknown_command.yaml}", "--out", "{tmp}/out"],
         "unknown command"),
    Case("sweep/empty-grid-list", ["sweep", "{file:sweep_empty_list.yaml}", "--out", "{tmp}/out"], "no values"),
    Case("sweep/unknown-top-level-key", ["sweep", "{file:sweep_unknown_key.yaml}", "--out", "{tmp}/out"], "retries"),
    Case("sweep/unknown-cell-setting", ["sweep", "{file:sweep_unknown_cell_key.yaml}", "--out", "{tmp}/out"],
         "colour"),
    Case("sweep/function-outside-package", ["sweep", "{file:sweep_outside_package.yaml}", "--out", "{tmp}/out"],
         "inside the conceptlens package"),
    Case("sweep/function-that-writes-anywhere", ["sweep", "{file:sweep_writes_anywhere.yaml}", "--out", "{tmp}/out"],
         "outside the sweep folder"),
    Case("sweep/no-output-folder", ["sweep", "{file:sweep_no_out.yaml}"], "no output folder", out=None),
    Case("sweep/missing-file", ["sweep", "{tmp}/nothing.yaml", "--out", "{tmp}/out"], "does not exist"),
    Case("report/missing-run", ["report", "{tmp}/no-run", "--out", "{tmp}/out.html"], "does not exist",
         "{tmp}/out.html"),
    Case("compare/not-a-run", ["llm", "compare", "{file:family_ok}", "--out", "{tmp}/out"], "no summary.json"),
    Case("reproduce/quick-and-full", ["reproduce", "--out", "{tmp}/out", "--quick", "--full"], "exclude each other"),
    Case("reproduce/unknown-stage", ["reproduce", "--out", "{tmp}/out", "--only", "llm_colours"], "unknown stage"),
    Case("finetune/unknown-model", ["llm", "finetune", "--model", "{tmp}/no/model", "--family", "{file:family_ok}",
                                    "--layers", "first:1", "--out", "{tmp}/out"], "does not exist"),
]


def _expand(value: str, tmp: Path, files: dict[str, Path], model: Path) -> str:
    out = value.replace("{tmp}", str(tmp)).replace("{model}", str(model))
    while "{file:" in out:
        start = out.index("{file:")
        end = out.index("}", start)
        out = out[:start] + str(files[out[start + 6:end]]) + out[end + 1:]
    return out


def _snapshot(path: Path) -> dict[str, str] | None:
    if not path.exists():
        return None
    return fault_inject.tree_digest(path, ignore=())


def _make_previous(case: Case, out: Path, files: dict[str, Path], model: Path, cli) -> None:
    """A valid earlier result at the --out path (the failing command must leave it unchanged)."""
    first = case.args[0]
    if first == "capture":
        result = cli("capture", "--model", model, "--prompts", files["prompts.txt"], "--out", out)
    elif first == "decodability":
        result = cli("decodability", files["acts.npy"], files["labels40.txt"], "--n-boot", "20", "--out", out)
    elif case.args[:2] == ["synthetic", "train"]:
        result = cli("synthetic", "train", "--out", out, *TINY_SYN)
    else:
        raise AssertionError(case.id)
    assert result.code == 0, result.stderr[-2000:]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_one_clear_error(case: Case, tmp_path: Path, tiny_lm: Path, cli):
    if not registered(*case.command):
        pytest.skip(f"`conceptlens {' '.join(case.command)}` not there yet")
    files = _write_inputs(tmp_path)
    out = Path(_expand(case.out, tmp_path, files, tiny_lm)) if case.out else None
    if case.existing_out:
        _make_previous(case, out, files, tiny_lm, cli)
    before = _snapshot(out) if out else None
    parts_before = _snapshot(Path(str(out) + ".parts")) if out else None
    result = cli(*[_expand(a, tmp_path, files, tiny_lm) for a in case.args])
    assert_clean_error(result, case.expect)
    if out is not None:
        assert _snapshot(out) == before, f"{out} was written or changed by a failing command"
        assert _snapshot(Path(str(out) + ".parts")) == parts_before, f"{out}.parts left behind"
        assert not fault_inject.leftovers(tmp_path), "temporary files left behind"
    assert not list(tmp_path.rglob("PWNED*")), "a config file made a write outside the run folder"


SUBPROCESS_CASES = [pytest.param("capture/unknown-layer", marks=pytest.mark.slow),  # imports transformers: ~10 s
                    "decodability/pickled-pt", "synthetic/malformed-yaml"]


@pytest.mark.parametrize("case_id", SUBPROCESS_CASES)
def test_bad_input_through_the_console_script(case_id: str, tmp_path: Path, tiny_lm: Path):
    """The installed `conceptlens` script: the same message and exit code 2 from a real process."""
    case = next(c for c in CASES if c.id == case_id)
    files = _write_inputs(tmp_path)
    result = run_cli(*[_expand(a, tmp_path, files, tiny_lm) for a in case.args], timeout=120)
    assert_clean_error(result, case.expect)
    assert not Path(_expand(case.out, tmp_path, files, tiny_lm)).exists()


def test_usage_errors_exit_2_without_traceback(cli, tmp_path: Path):
    """Errors caught by the argument parser itself (a non-integer --k): exit 2, a hint, no traceback."""
    result = cli("decodability", tmp_path / "a.npy", tmp_path / "b.txt", "--k", "ten")
    text = result.stdout + result.stderr
    assert result.code == 2 and "Traceback" not in text
    assert "--k" in text and "Try" in text and "--help" in text
