"""The shared model flags (`with_model_flags`): one definition gives every command the same `--model` ...
`--trust-remote-code` flags, in the same places, and hands them to the command as one `ModelFlags`."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from conceptlens.cli.common import ModelFlags, with_model_flags
from conceptlens.errors import ConceptLensError

LOADING = ["--revision", "--dtype", "--device", "--device-map", "--load-in", "--trust-remote-code"]


def flag_order(help_text: str) -> list[str]:
    return re.findall(r"^\W*(--[a-z-]+)", help_text, flags=re.MULTILINE)


def toy_app(revision: bool, seen: list) -> typer.Typer:
    app = typer.Typer(add_completion=False)

    @app.command()
    @with_model_flags(revision=revision)
    def toy(shots: int = typer.Option(4, help="own option"), *, model_flags: ModelFlags) -> None:
        """A command with one option of its own."""
        seen.append((shots, model_flags))

    return app


def test_the_flags_reach_the_command_as_one_object_and_become_a_model_spec():
    seen: list = []
    result = CliRunner().invoke(toy_app(True, seen), ["--shots", "2", "--model", "m", "--revision", "r",
                                                      "--dtype", "bfloat16", "--load-in", "4bit", "--trust-remote-code"])
    assert result.exit_code == 0, result.output
    [(shots, flags)] = seen
    assert shots == 2 and flags == ModelFlags("m", revision="r", dtype="bfloat16", load_in="4bit", trust_remote_code=True)
    spec = flags.spec()
    assert (spec.name, spec.revision, spec.dtype, spec.load_in, spec.trust_remote_code) == ("m", "r", "bfloat16", "4bit",
                                                                                            True)


def test_defaults_and_the_order_of_the_flags_in_the_help():
    seen: list = []
    app = toy_app(False, seen)
    assert CliRunner().invoke(app, []).exit_code == 0
    assert seen == [(4, ModelFlags("smollm2-135m"))]
    order = flag_order(CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"}).output)
    assert order == ["--model", "--shots", *[f for f in LOADING if f != "--revision"], "--help"]


def test_a_bad_flag_is_refused_only_when_the_command_asks_for_the_spec():
    """Validation stays where each command had it (after its own checks): `spec()`, not the decorator."""
    flags = ModelFlags("m", dtype="float8")
    with pytest.raises(ConceptLensError, match="dtype"):
        flags.spec()


@pytest.mark.parametrize("command", [["capture"], ["llm", "run"], ["llm", "finetune"], ["llm", "intervene"],
                                     ["llm", "transfer"]])
def test_every_model_command_lists_the_flags_first_and_last(cli, command):
    code, text = cli(*command, "--help")
    order = flag_order(text)
    assert code == 0 and order[0] == "--model" and order[-1] == "--help"
    loading = [f for f in LOADING if command != ["llm", "run"] or f != "--revision"]  # run has --revisions instead
    assert order[-1 - len(loading):-1] == loading
