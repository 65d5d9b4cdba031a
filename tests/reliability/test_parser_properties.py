"""Property tests: the two parsers of user-written files never fail with anything but ConceptLensError.

Hypothesis writes arbitrary family folders (file names, bytes, JSON values, JSONL lines) and
arbitrary synthetic configs (YAML text, nested mappings of real and made-up keys, `--set`
overrides); each input must give either a valid result (checked against the format's rules) or
a `ConceptLensError` with a problem and a fix, never another exception.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from conceptlens.errors import ConceptLensError

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                    derandomize=True)

# ---- user family folders ----------------------------------------------------------------------------
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                         st.text(max_size=12))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                                 st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                           max_leaves=12)
texts = st.one_of(st.sampled_from(["a", "cat", "CAT", " ", "", "x\ny", "tab\there", "caf\xe9", "\u2028", "->"]),
                  st.text(max_size=10))
pairs = st.fixed_dictionaries({"input": st.one_of(texts, json_scalars), "output": st.one_of(texts, json_scalars)},
                              optional={"note": json_values})
pair_lists = st.lists(st.one_of(pairs, json_values), max_size=6)


@st.composite
def concept_files(draw) -> tuple[str, bytes]:
    stem = draw(st.one_of(st.sampled_from(["upper", "lower", "Null", "a b", "ünï", ".hidden", "x.y"]),
                          st.text(st.characters(codec="utf-8", exclude_characters="/\\\0"), min_size=1, max_size=8)))
    suffix = draw(st.sampled_from([".json", ".jsonl", ".txt", ""]))
    kind = draw(st.sampled_from(["list", "jsonl", "value", "bytes", "text"]))
    if kind == "list":
        body = json.dumps(draw(pair_lists)).encode()
    elif kind == "jsonl":
        body = "\n".join(json.dumps(item) for item in draw(pair_lists)).encode()
    elif kind == "value":
        body = json.dumps(draw(json_values)).encode()
    elif kind == "bytes":
        body = draw(st.binary(max_size=40))
    else:
        body = draw(st.text(max_size=40)).encode("utf-8", "surrogatepass")
    return stem + suffix, body


def _check_family(family, min_pairs: int) -> None:
    from conceptlens.tasks.family import NULL, TaskFamily

    assert isinstance(family, TaskFamily)
    assert len(family.concepts) >= 2
    for concept, examples in family.concepts.items():
        if concept != NULL:
            assert len(examples) >= min_pairs
        for ex in examples:
            for value in (ex.input, ex.output):
                assert isinstance(value, str) and value.strip() and "\n" not in value and "\r" not in value


@SETTINGS
@given(files=st.lists(concept_files(), max_size=4), null=st.booleans(), min_pairs=st.integers(1, 3))
@example(files=[("deep.json", b"[" * 100_000 + b"]" * 100_000)], null=True, min_pairs=2)
@example(files=[("a.json", b'[{"input": "x", "output": "y"}, {"input": "z", "output": "w"}]'),
                ("a.jsonl", b'{"input": "x", "output": "y"}')], null=True, min_pairs=1)
def test_user_family_gives_a_family_or_a_clear_error(files, null, min_pairs):
    from conceptlens.tasks.user_family import user_family

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "family"
        folder.mkdir()
        for name, body in files:
            try:
                (folder / name).write_bytes(body)
            except (OSError, ValueError):
                assume(False)  # a name the file system refuses is not an input a user can hand over
        try:
            family = user_family(folder, null=null, min_pairs=min_pairs)
        except ConceptLensError as exc:
            assert exc.problem and exc.fix
            return
        _check_family(family, min_pairs)


@SETTINGS
@given(name=st.text(max_size=20))
def test_family_names_give_a_family_or_a_clear_error(name):
    """`load_family` with any string (unknown names, odd paths) for the `--family` option."""
    from conceptlens.tasks.registry import load_family

    assume(name not in ("pos", "bitwise"))  # the built-ins are slow to build and tested by their owners
    try:
        load_family(name)
    except ConceptLensError as exc:
        assert exc.problem and exc.fix


# ---- synthetic configs ------------------------------------------------------------------------------
def _real_keys() -> list[str]:
    from conceptlens.synthetic.config import _all_keys

    return _all_keys()


KEYS = _real_keys()
SHORT_KEYS = sorted({key.split(".")[-1] for key in KEYS})
yaml_values = st.one_of(json_scalars, st.lists(st.one_of(st.integers(-3, 9), st.floats(-1, 1)), max_size=3),
                        st.sampled_from(["sparse", "families", "adam", "cosine", "last", "all", "1e-3", "[0.9, 0.99]"]),
                        st.integers(-5, 100))


@st.composite
def config_trees(draw) -> dict:
    tree: dict = {}
    for key in draw(st.lists(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), max_size=6)):
        parts = key.split(".") if key else [key]
        node = tree
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            node[parts[-1]] = draw(yaml_values)
    return tree


overrides = st.lists(st.one_of(
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS + SHORT_KEYS), st.one_of(
        st.text(max_size=8), st.integers(-5, 50).map(str), st.sampled_from(["[", "{a: 1", "!!python/object:os.system x",
                                                                            "null", "[0.9, 0.99]", "true", "1e9"]))),
    st.text(max_size=12)), max_size=4)


def _check_config(config) -> None:
    from conceptlens.synthetic.config import RunConfig

    assert isinstance(config, RunConfig)
    assert config.model.d_model % config.model.n_heads == 0
    assert config.schedule.eval_from_points < config.task.n_points


@SETTINGS
@given(tree=config_trees(), extra=overrides)
def test_config_from_dict_gives_a_config_or_a_clear_error(tree, extra):
    from conceptlens.synthetic.config import config_from_dict

    try:
        config = config_from_dict(tree, extra)
    except ConceptLensError as exc:
        assert exc.problem and exc.fix
        return
    _check_config(config)


@SETTINGS
@given(body=st.one_of(st.text(max_size=200), st.binary(max_size=80),
                      config_trees().map(lambda t: yaml.safe_dump(t, allow_unicode=True))),
       extra=overrides)
@example(body="task: {kind: sparse\nmodel: [\n", extra=[])
@example(body=b"name: caf\xe9\n", extra=[])
@example(body="!!python/object/apply:os.system ['true']", extra=[])
@example(body="a: &a [*a]", extra=[])
@example(body="- " * 5000, extra=[])
def test_load_config_gives_a_config_or_a_clear_error(body, extra):
    from conceptlens.synthetic.config import load_config

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_bytes(body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass"))
        try:
            config = load_config(path, extra)
        except ConceptLensError as exc:
            assert exc.problem and exc.fix
            return
    _check_config(config)


@pytest.mark.parametrize("name", ["quick", "paper", "six-bases", "overlapping", "families"])
def test_packaged_configs_still_load(name):
    from conceptlens.synthetic.config import available_configs, load_config

    if name not in available_configs():
        pytest.skip(f"{name} not packaged")
    _check_config(load_config(name))
