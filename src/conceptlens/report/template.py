"""The report's one HTML page: a Jinja2 template with its CSS inline and no script at all.

A strict Content-Security-Policy (`default-src 'none'`, images only from `data:`) makes the page
unable to reach the network even if a file it shows held a URL. Every value is autoescaped.
"""

CSS = """
:root { --ink: #1d2330; --muted: #5b6475; --line: #e3e6ec; --soft: #f6f7f9; --accent: #2f5fb3;
        --good: #1f7a4d; --bad: #b3261e; --paper: #7a4b00; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff; font-size: 16px; line-height: 1.55;
       font-family: system-ui, -apple-system, "Segoe UI", "Helvetica Neue", "DejaVu Sans", "Liberation Sans",
                    Helvetica, Arial, sans-serif; }
header.top { padding: 2.2rem 0 1.2rem; border-bottom: 1px solid var(--line); background: var(--soft); }
.wrap { max-width: 1120px; margin: 0 auto; padding: 0 1.5rem; }
h1 { font-size: 1.9rem; margin: 0 0 .3rem; letter-spacing: -.01em; }
h2 { font-size: 1.35rem; margin: 2.6rem 0 .4rem; padding-top: .6rem; border-top: 2px solid var(--ink); }
h2.depth-2 { font-size: 1.2rem; border-top-width: 1px; }
h2.depth-3, h2.depth-4 { font-size: 1.1rem; border-top: 1px dashed var(--line); }
h3 { font-size: 1.02rem; margin: 1.4rem 0 .4rem; color: var(--muted); text-transform: uppercase;
     letter-spacing: .05em; }
.sub { color: var(--muted); margin: 0; }
.path { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: .85em; color: var(--muted); }
nav.toc { margin: 1.6rem 0; padding: 1rem 1.4rem; background: var(--soft); border-radius: 8px; }
nav.toc ol { margin: .3rem 0; padding-left: 1.3rem; }
nav.toc li.depth-2 { margin-left: 1.2rem; } nav.toc li.depth-3, nav.toc li.depth-4 { margin-left: 2.4rem; }
nav.toc a { color: var(--accent); text-decoration: none; } nav.toc a:hover { text-decoration: underline; }
.what { max-width: 60rem; } .what p { margin: .35rem 0; }
.finding { max-width: 64rem; margin: .8rem 0 1rem; padding: .5rem 1.1rem; border-left: 4px solid var(--accent);
           background: var(--soft); border-radius: 0 6px 6px 0; } .finding p { margin: .4rem 0; }
.badge { display: inline-block; font-size: .8rem; padding: .1rem .55rem; border-radius: 999px;
         background: var(--soft); border: 1px solid var(--line); color: var(--muted); margin-left: .4rem; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(440px, 1fr)); gap: 1.2rem; }
figure { margin: 0; padding: .8rem; border: 1px solid var(--line); border-radius: 8px; background: #fff; }
.figures figure.wide { grid-column: 1 / -1; }
figure img { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figcaption { font-size: .9rem; color: var(--muted); margin-top: .5rem; }
figcaption b { color: var(--ink); }
.table-wrap { overflow-x: auto; margin: .6rem 0 1.2rem; }
table { border-collapse: collapse; font-size: .88rem; min-width: 16rem; }
.tcap { font-weight: 600; margin: 1rem 0 .3rem; }
.tcap .path { font-weight: 400; margin-left: .5rem; }
th, td { padding: .3rem .7rem; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: var(--soft); font-weight: 600; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.key { font-weight: 600; }
td.best { background: #e7f3ec; font-weight: 700; }
td.ours { color: var(--accent); font-weight: 600; } td.paper { color: var(--paper); }
td.status-done { color: var(--good); } td.status-failed { color: var(--bad); font-weight: 700; }
tr:nth-child(even) td { background-color: #fbfbfc; } tr:nth-child(even) td.best { background: #e7f3ec; }
.note { font-size: .85rem; color: var(--muted); margin-top: .2rem; }
.warn { color: var(--bad); }
td.good { color: var(--good); font-weight: 600; } td.bad { color: var(--bad); font-weight: 600; }
td.warn { color: var(--paper); font-weight: 600; }
.numbers { columns: 2 22rem; column-gap: 2.5rem; font-size: .9rem; }
.kv { display: flex; justify-content: space-between; gap: 1rem; break-inside: avoid; padding: .1rem 0;
      border-bottom: 1px dotted var(--line); }
.kv .k { color: var(--muted); font-family: ui-monospace, Menlo, Consolas, monospace; font-size: .85em; }
.kv .v { font-variant-numeric: tabular-nums; text-align: right; overflow-wrap: anywhere; }
details { margin: .5rem 0; } summary { cursor: pointer; color: var(--accent); }
pre { background: var(--soft); padding: .8rem 1rem; border-radius: 6px; overflow-x: auto; font-size: .82rem;
      max-height: 28rem; }
footer { margin: 3rem 0 2rem; padding-top: 1rem; border-top: 1px solid var(--line); color: var(--muted);
         font-size: .85rem; }
@media print { .figures { display: block; } figure { break-inside: avoid; margin-bottom: 1rem; } }
"""

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'none'; base-uri 'none'; form-action 'none'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>conceptlens report: {{ run_name }}</title>
<style>{{ css|safe }}</style>
</head>
<body>
{% macro table(view) -%}
<p class="tcap">{{ view.caption or view.title }}{% if view.caption and view.title %}<span class="path">{{ view.title }}</span>{% endif %}</p>
<div class="table-wrap"><table>
{% if view.columns %}<thead><tr>{% for column in view.columns %}<th>{{ column }}</th>{% endfor %}</tr></thead>{% endif %}
<tbody>
{% for row in view.rows %}<tr>{% for cell in row %}<td{% if cell.css %} class="{{ cell.css }}"{% endif %}>{{ cell.text }}</td>{% endfor %}</tr>
{% endfor %}</tbody></table>
{% if view.note %}<p class="note">{{ view.note }}</p>{% endif %}
</div>
{%- endmacro %}
<header class="top"><div class="wrap">
<h1>Concept encoding and decoding in in-context learning</h1>
<p class="sub">Report of the run <span class="path">{{ run_path }}</span>, written {{ created }} by conceptlens {{ version }}.</p>
<p class="sub">The method and the paper's numbers: {{ paper }}. Values from the paper are shown in brown beside ours in blue.</p>
</div></header>
<main class="wrap">
<nav class="toc" aria-label="contents"><b>Contents</b><ol>
{% if findings %}<li><a href="#findings">Findings beside the paper</a></li>{% endif %}
{% if sweep %}<li><a href="#sweep">Sweep cells</a></li>{% endif %}
{% for section in sections %}<li class="depth-{{ section.depth }}"><a href="#{{ section.anchor }}">{{ section.title }}</a>{% if section.relative %} <span class="path">{{ section.relative }}/</span>{% endif %}</li>
{% endfor %}{% if stages %}<li><a href="#stages">Stages and time</a></li>{% endif %}
<li><a href="#software">Software</a></li>
</ol></nav>
{% if not sections %}<p class="warn">This folder holds no figures, tables or results yet.</p>{% endif %}
{% if findings %}<section id="findings"><h2>Findings beside the paper</h2>{{ table(findings) }}</section>{% endif %}
{% if sweep %}<section id="sweep"><h2>Sweep cells</h2>{{ table(sweep) }}</section>{% endif %}
{% for section in sections %}
<section id="{{ section.anchor }}">
<h2 class="depth-{{ section.depth }}">{{ section.title }}{% if section.status %}<span class="badge">{{ section.status }}</span>{% endif %}</h2>
<p class="path">{{ section.relative or "." }}/</p>
{% if section.statements %}<div class="finding">{% for text in section.statements %}<p>{{ text }}</p>{% endfor %}</div>{% endif %}
{% if section.texts %}<div class="what">{% for text in section.texts %}<p>{{ text }}</p>{% endfor %}</div>{% endif %}
{% for note in section.notes %}<p class="note warn">{{ note }}</p>{% endfor %}
{% for note in section.info %}<p class="note">{{ note }}</p>{% endfor %}
{% for view in section.comparisons %}{{ table(view) }}{% endfor %}
{% if section.figures %}<div class="figures">
{% for figure in section.figures %}<figure{% if figure.wide %} class="wide"{% endif %}><img src="{{ figure.data_uri }}" alt="{{ figure.caption }}"><figcaption><b>Figure {{ figure.number }}.</b> {{ figure.caption }} <span class="path">{{ figure.name }}</span></figcaption></figure>
{% endfor %}</div>{% endif %}
{% for name, blocks in section.markdown %}<h3>{{ name }}</h3>
{% for kind, content in blocks %}{% if kind == "table" %}{{ table(content) }}{% elif kind == "heading" %}<p><b>{{ content }}</b></p>{% else %}<p>{{ content }}</p>{% endif %}{% endfor %}
{% endfor %}
{% if section.tables %}<h3>Tables</h3>{% for view in section.tables %}{{ table(view) }}{% endfor %}{% endif %}
{% if section.numbers %}<h3>Key numbers</h3>{% for name, pairs in section.numbers %}<p class="tcap"><span class="path">{{ name }}</span></p>
<div class="numbers">{% for key, value in pairs %}<div class="kv"><span class="k">{{ key }}</span><span class="v">{{ value }}</span></div>{% endfor %}</div>{% endfor %}{% endif %}
{% if section.settings %}<h3>Settings</h3>{% for name, text in section.settings %}<details><summary>{{ name }}</summary><pre>{{ text }}</pre></details>{% endfor %}{% endif %}
</section>
{% endfor %}
{% if stages %}<section id="stages"><h2>Stages and time</h2>{{ table(stages) }}</section>{% endif %}
<section id="software"><h2>Software</h2>
<p class="tcap">versions in the environment that wrote this report</p>
<div class="table-wrap"><table><tbody>
{% for name, value in software %}<tr><td class="key">{{ name }}</td><td>{{ value }}</td></tr>{% endfor %}
</tbody></table></div></section>
<footer>conceptlens report. One self-contained file: figures are embedded, and the page makes no network request.</footer>
</main>
</body>
</html>
"""
