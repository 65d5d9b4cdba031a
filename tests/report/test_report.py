"""The report: self-contained (no network reference), escapes what it reads, shows what a run holds."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser

import pandas as pd
import pytest

from conceptlens.errors import ConceptLensError
from conceptlens.report import render_report, write_report
from conceptlens.report.tables import summarise



class _Resources(HTMLParser):
    """Every reference the page would load: URL attributes (not data: or #anchors), external tags, CSS urls."""

    URL_ATTRS = {"src", "href", "action", "formaction", "poster", "srcset", "data", "background", "ping"}
    EXTERNAL_TAGS = {"script", "link", "iframe", "object", "embed", "frame", "base", "audio", "video", "source"}

    def __init__(self):
        super().__init__()
        self.found, self._style = [], False

    def handle_starttag(self, tag, attrs):
        if tag in self.EXTERNAL_TAGS:
            self.found.append(f"<{tag}>")
        for name, value in attrs:
            if name in self.URL_ATTRS and value and not value.startswith(("data:image/", "#")):
                self.found.append(f"{name}={value[:60]}")
            if name == "style" and value and ("url(" in value or "@import" in value):
                self.found.append(f"style={value[:60]}")
        self._style = tag == "style"

    def handle_data(self, data):
        if self._style and ("url(" in data or "@import" in data):
            self.found.append("css url/import")


def resources(html: str) -> list[str]:
    parser = _Resources()
    parser.feed(html)
    return parser.found


def test_report_is_self_contained(run_folder):
    html = write_report(run_folder).read_text()
    assert "http://" not in html and "https://" not in html
    assert resources(html) == []
    assert "<script" not in html.lower()
    images = re.findall(r'<img src="data:image/png;base64,([^"]+)"', html)
    assert len(images) == 4  # every PNG of the run, each a real PNG
    assert all(base64.b64decode(b).startswith(b"\x89PNG") for b in images)
    assert "default-src 'none'" in html


def test_report_shows_sections_stages_and_paper_values(run_folder):
    html = render_report(run_folder)
    for anchor in ("s-root", "s-llm-pos", "s-interventions-pos", "s-synthetic", "s-comparison"):
        assert f'id="{anchor}"' in html and f'href="#{anchor}"' in html
    # study order: synthetic before the LM before interventions before the comparison
    order = [html.index(f'id="s-{name}"') for name in ("synthetic", "llm-pos", "interventions-pos", "comparison")]
    assert order == sorted(order)
    assert "interventions_pos" in html and "RuntimeError: out of memory" in html and "516.6" in html
    assert "15/32 = 0.47" in html and "14/30 = 0.47" in html  # paper's peak layer beside ours
    assert "0.78" in html and "0.610 [0.200, 0.900]" in html
    assert "+14.0 / -15.0" in html and "+10.0 / -10.0" in html  # the paper's intervention effects beside ours
    assert "69.4 ± 14.2" in html  # the paper's finetuning table
    assert "0.83 ± 0.05" in html and "TD, after finetuning first:10" in html  # a finetune run beside it
    assert "mean TD over concepts, by layer" in html  # the long decodability table is pivoted
    assert "shots 10" in html and "651 rows" in html
    assert "transformers" in html and "peft" in html and "python" in html
    assert "steps: 3000" in html  # config.yaml shown
    assert "metrics.jsonl (last of 3 records)" in html and "0.422" in html  # torn last line skipped


def test_hostile_file_content_is_escaped(tmp_path):
    run = tmp_path / "run"
    evil = run / "llm" / "<script>alert(1)<"
    evil.mkdir(parents=True)
    payload = '<img src=x onerror=alert(1)><script>fetch("https://evil.example")</script>'
    pd.DataFrame({"concept": [payload, "ok"], "td": [0.5, 0.6]}).to_csv(evil / "decodability.csv", index=False)
    (evil / "summary.json").write_text(json.dumps({"best_layer": payload, "note": "</dd><script>x()</script>"}))
    (evil / "config.yaml").write_text(f"model: '{payload}'\n")
    (evil / "comparison.md").write_text(f"# {payload}\n| a | b |\n|---|---|\n| {payload} | 1 |\n")
    (evil / f"fig{payload[:4]}.png").write_bytes(b"<svg onload=alert(1)>")  # not a PNG: never embedded
    (run / "stages.json").write_text(json.dumps({"x<script>": {"status": "<b>done</b>", "seconds": 1, "folder": "llm"}}))
    html = render_report(run)
    assert "<script" not in html.lower()
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<b>done</b>" not in html and "</dd><script>" not in html
    assert resources(html) == []
    assert not re.findall(r'<img src="(?!data:image/(png|jpeg);base64,)', html)
    assert "not a PNG/JPEG file" in html


def test_report_of_a_single_command_run_and_of_an_empty_folder(tmp_path):
    single = tmp_path / "single"
    single.mkdir()
    pd.DataFrame({"layer": [0, 1, 2], "td": [0.2, 0.5, 0.4]}).to_csv(single / "decodability.csv", index=False)
    html = render_report(single)
    assert "Concept decodability (TD)" in html and "Run overview" in html and "0.500" in html
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "holds no figures, tables or results yet" in render_report(empty)
    with pytest.raises(ConceptLensError):
        render_report(tmp_path / "missing")


def test_long_tables_are_summarised_and_short_ones_shown_whole():
    long = pd.DataFrame([{"model": "m", "shots": s, "layer": l, "concept": c, "td": l / 10 + s / 100}
                         for s in (1, 4) for l in range(10) for c in "abc"])
    view = summarise(long, "decodability.csv")
    assert view.columns == ["layer", "shots 1", "shots 4"] and len(view.rows) == 10
    assert "model = m in every row" in view.note
    assert view.rows[-1][2].css == "num best"  # the best layer of every column is marked
    unknown = summarise(pd.DataFrame({"x": range(100)}), "other.csv")
    assert len(unknown.rows) == 15 and "first 15 of 100 rows" in unknown.note
    short = summarise(pd.DataFrame({"a": [1, 2], "b": [0.12345, float("nan")]}), "small.csv")
    assert [c.text for c in short.rows[0]] == ["1", "0.123"] and short.rows[1][1].text == "–"


def test_report_cli_writes_the_file(run_folder):
    from typer.testing import CliRunner

    from conceptlens.cli.main import app

    result = CliRunner().invoke(app, ["report", str(run_folder)])
    assert result.exit_code == 0, result.output
    assert (run_folder / "report.html").exists()


def test_the_resource_check_itself_catches_references():
    page = ('<link rel="stylesheet" href="https://cdn.example/x.css"><img src="http://x/y.png">'
            '<a href="#ok">ok</a><img src="data:image/png;base64,AAAA"><style>body{background:url(x.png)}</style>')
    assert resources(page) == ["<link>", "href=https://cdn.example/x.css", "src=http://x/y.png", "css url/import"]
