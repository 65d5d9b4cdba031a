"""Commands refuse a run folder of another kind, and another spec, before loading a model or writing."""

from __future__ import annotations

from pathlib import Path

from conceptlens.runs import RunFolder


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_finetune_into_a_study_folder_is_refused(cli, tmp_path):
    study = tmp_path / "study"
    with RunFolder(study, "encoding-study", {"study": "x"}):
        (study / "summary.json").write_text("{}")
    before = snapshot(study)
    code, text = cli("llm", "finetune", "--model", "/nonexistent/model", "--family", "bitwise", "--layers", "first:1",
                     "--out", study)
    assert code == 2 and "'encoding-study' run folder; this command writes 'finetune' folders" in text
    assert "another --out" in text and "Traceback" not in text
    assert snapshot(study) == before


def test_run_with_other_settings_is_refused_naming_them(cli, tmp_path):
    from conceptlens.specs import EncodingStudySpec, ModelSpec

    out = tmp_path / "run"
    spec = {"model": ModelSpec(name="/nonexistent/model").model_dump(),
            "study": EncodingStudySpec(family="bitwise", shots=[1, 4]).model_dump(), "revisions": None}
    with RunFolder(out, "encoding-study", spec):
        pass
    code, text = cli("llm", "run", "--model", "/nonexistent/model", "--family", "bitwise", "--shots", "1,2",
                     "--out", out)
    assert code == 2 and "differs in ['study.shots']" in text, text
