"""Typed experiment specs: strict (unknown keys refused), the rules in one place (k + 1 prompts
per concept, distinct shots, a visible separator), errors naming parameters, the CLI naming flags."""

from __future__ import annotations

import pytest

from conceptlens.cli.flags import as_flags
from conceptlens.errors import ConceptLensError
from conceptlens.specs import EncodingStudySpec, FinetuneSpec, InterventionSpec, ModelSpec, build


def test_unknown_keys_are_refused_naming_the_key():
    with pytest.raises(ConceptLensError, match="`batch`"):
        build(EncodingStudySpec, family="pos", batch=3)


@pytest.mark.parametrize("spec", [EncodingStudySpec, FinetuneSpec])
def test_only_what_td_cannot_compute_is_refused(spec):
    """TD needs k + 1 prompts per concept; fewer than 2(k + 1) only skip the held-out layer choice."""
    assert spec(family="pos", prompts_per_concept=12, k=10).prompts_per_concept == 12
    assert spec(family="pos", prompts_per_concept=11, k=10).prompts_per_concept == 11
    with pytest.raises(ConceptLensError, match="needs k \\+ 1 = 11 prompts") as info:
        spec(family="pos", prompts_per_concept=10, k=10)
    assert as_flags(info.value.fix).startswith("use --prompts-per-concept 100 (or at least 11)")


@pytest.mark.parametrize("spec", [EncodingStudySpec, FinetuneSpec])
def test_the_prompt_format_is_part_of_the_spec(spec):
    made = spec(family="bitwise", separator=" -> ", answer_prefix="", fit_format=False)
    assert (made.separator, made.answer_prefix, made.fit_format) == (" -> ", "", False)
    assert (spec(family="bitwise").separator, spec(family="bitwise").answer_prefix) == (" ->", " ")
    with pytest.raises(ConceptLensError, match="`separator` must contain a visible character"):
        build(spec, family="bitwise", separator=" ")


@pytest.mark.parametrize("values, fragment", [({"shots": []}, "no shots"), ({"shots": [1, 1]}, "distinct"),
                                              ({"split": "dev"}, "unknown split 'dev'")])
def test_study_rules(values, fragment):
    with pytest.raises(ConceptLensError, match=fragment):
        EncodingStudySpec(family="pos", **values)


def test_model_and_intervention_rules_name_the_parameter():
    with pytest.raises(ConceptLensError, match="unknown dtype 'float8'"):
        ModelSpec(dtype="float8")
    with pytest.raises(ConceptLensError) as info:
        ModelSpec(load_in="3bit")
    assert as_flags(info.value.problem) == "unknown --load-in '3bit'."
    with pytest.raises(ConceptLensError, match="`separator` must contain a visible character"):
        InterventionSpec(family="pos", separator="  ")
    assert InterventionSpec(family="pos", layers=[3, 5]).layers == [3, 5]


def test_flag_mapping_touches_only_marked_parameters():
    assert as_flags("rerun with resume=True, or choose another `out`.") == "rerun with --resume, or choose another --out."
    assert as_flags("the model has k layers; use k=5") == "the model has k layers; use --k 5"
    assert as_flags("`unknown_thing` x==y") == "`unknown_thing` x==y"
