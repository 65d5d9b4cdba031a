"""`RunFolder`: one resume policy (same spec resumes, another spec or kind is refused, naming the
difference), checks before any write, and `DONE` markers shared by the study and sweep runners."""

from __future__ import annotations

import json

import pytest

from conceptlens.errors import ConceptLensError
from conceptlens.runs import RECORD, RunFolder, differing_fields, folder_done, mark_done
from conceptlens.specs import EncodingStudySpec, ModelSpec


def study_spec(**changes) -> dict:
    return {"model": ModelSpec().model_dump(), "study": EncodingStudySpec(family="pos", **changes).model_dump()}


def test_same_spec_resumes_and_keeps_the_results(tmp_path):
    out = tmp_path / "run"
    with RunFolder(out, "encoding-study", study_spec(shots=[1, 4])):
        (out / "decodability.csv").write_text("layer,td\n0,0.5\n")
    with RunFolder(out, "encoding-study", study_spec(shots=[1, 4])):
        assert (out / "decodability.csv").read_text() == "layer,td\n0,0.5\n"
    record = json.loads((out / RECORD).read_text())
    assert record["kind"] == "encoding-study" and record["spec"]["study"]["shots"] == [1, 4]


def test_another_spec_is_refused_naming_the_differing_fields(tmp_path):
    out = tmp_path / "run"
    with RunFolder(out, "encoding-study", study_spec(shots=[1, 4])):
        pass
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(ConceptLensError, match=r"differs in \['study.k', 'study.shots'\]") as info:
        with RunFolder(out, "encoding-study", study_spec(shots=[1, 4, 10], k=5)):
            raise AssertionError("the body must not run")
    assert "`out`" in info.value.fix and str(out) in info.value.fix
    assert sorted(p.name for p in out.iterdir()) == before


def test_a_folder_of_another_kind_is_refused(tmp_path):
    out = tmp_path / "run"
    with RunFolder(out, "encoding-study", study_spec()):
        pass
    with pytest.raises(ConceptLensError, match="is a 'encoding-study' run folder; this command writes 'finetune' folders"):
        RunFolder(out, "finetune", {"layers": "first:1"}).check()


def test_a_file_is_no_run_folder_and_nothing_is_written(tmp_path):
    path = tmp_path / "file.txt"
    path.write_text("x")
    with pytest.raises(ConceptLensError, match="is a file"):
        with RunFolder(path, "capture", {}):
            pass
    assert path.read_text() == "x"


def test_legacy_settings_file_is_the_spec_and_new_fields_take_their_defaults(tmp_path):
    out = tmp_path / "study"
    out.mkdir()
    old = ModelSpec().model_dump()
    del old["trust_remote_code"]  # a field added after the run began
    (out / "settings.json").write_text(json.dumps(old))
    with RunFolder(out, "reproduce", ModelSpec(), legacy="settings.json"):
        pass
    with pytest.raises(ConceptLensError, match=r"differs in \['dtype'\]"):
        RunFolder(out, "reproduce", ModelSpec(dtype="bfloat16"), legacy="settings.json").check()


def test_nested_locks_in_one_process_and_done_markers(tmp_path):
    out = tmp_path / "run"
    with RunFolder(out, "sweep", {"grid": {}}):
        with RunFolder(out, "sweep", {"grid": {}}):  # the same process may re-enter (a stage inside a study)
            assert not folder_done(out)
            mark_done(out)
    assert folder_done(out) and RunFolder(out, "sweep").done


def test_differing_fields_are_dotted_paths():
    assert differing_fields({"a": 1, "b": {"c": 2, "d": 3}}, {"a": 1, "b": {"c": 2, "d": 4}, "e": 0}) == ["b.d", "e"]
    assert differing_fields([1, 2], [1, 2]) == []


def test_a_failure_before_any_result_leaves_nothing_and_after_one_keeps_the_record(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ConceptLensError):
        with RunFolder(out, "intervention", {"layers": [99]}):
            raise ConceptLensError("layer 99 does not exist.")
    assert not out.exists()
    with pytest.raises(KeyboardInterrupt):
        with RunFolder(out, "intervention", {"layers": [3]}):
            (out / "interventions.csv").write_text("partial")
            raise KeyboardInterrupt
    with pytest.raises(ConceptLensError, match=r"differs in \['layers'\]"):
        RunFolder(out, "intervention", {"layers": [4]}).check()


def test_a_stage_that_cannot_be_computed_is_skipped_with_its_reason_and_the_run_goes_on(tmp_path):
    """After-peak finetuning when the TD peak is the last layer does not exist: the stage is recorded as
    skipped (with the reason), leaves no folder, its dependents are skipped, and later stages still run."""
    from conceptlens.errors import NotComputable
    from conceptlens.study.stages import Stage, run_stages

    ran = []

    def impossible(folder):
        (folder / "half.txt").write_text("x")
        raise NotComputable("the pretrained TD peak is the last layer (18): no block comes after it.", "use last:N.")

    def fine(folder):
        ran.append(folder.name)
        (folder / "out.txt").write_text("ok")

    stages = [Stage("after_peak", "finetune/after", impossible, kind="finetune"),
              Stage("needs_it", "finetune/next", fine, needs=("after_peak",), kind="finetune"),
              Stage("later", "later", fine)]
    status = run_stages(stages, tmp_path)
    assert status["after_peak"]["status"] == "skipped" and "last layer" in status["after_peak"]["reason"]
    assert not (tmp_path / "finetune" / "after").exists()
    assert status["needs_it"]["status"] == "skipped" and status["later"]["status"] == "done" and ran == ["later"]
    assert json.loads((tmp_path / "stages.json").read_text())["after_peak"]["status"] == "skipped"
    with pytest.raises(ConceptLensError):  # any other user error still stops the run
        run_stages([Stage("bad", "bad", lambda folder: (_ for _ in ()).throw(ConceptLensError("no.", "yes.")))],
                   tmp_path / "other")
