"""The report opens in a real browser (headless Chromium): the page loads and every image decodes.

Chromium (Debian package `chromium`) must be installed: `apt-get install -y chromium`. The test
adds one inline script to a copy of the report, in <head> before anything loads, that records
every load error and Content-Security-Policy violation, then writes into the DOM how many images
decoded (`naturalWidth > 0`). The copy keeps the report's policy (images only from `data:`), with
the script allowed by its hash, so an image that needed the network would fail here too.
"""

from __future__ import annotations

import base64
import hashlib
import re
import subprocess
from pathlib import Path

import pytest

from conceptlens.report import write_report

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

PROBE = """
window.__errors = [];
window.addEventListener('error', function (e) {
  var t = e.target || {};
  window.__errors.push((t.tagName || 'script') + ':' + (e.message || t.src || '').slice(0, 80));
}, true);
document.addEventListener('securitypolicyviolation', function (e) {
  window.__errors.push('csp:' + e.violatedDirective + ':' + String(e.blockedURI).slice(0, 80));
});
window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.images);
  var decoded = images.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  var out = document.createElement('pre');
  out.id = 'probe';
  out.textContent = 'images=' + images.length + ' decoded=' + decoded + ' sections=' +
    document.querySelectorAll('section').length + ' errors=' + JSON.stringify(window.__errors);
  document.body.appendChild(out);
});
"""

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="headless Chromium is not installed (Debian: apt-get install -y chromium)")


def with_probe(html: str) -> str:
    """The report with the probe script first in <head>, allowed by its sha256 in the page's policy."""
    digest = base64.b64encode(hashlib.sha256(PROBE.encode()).digest()).decode()
    assert "script-src 'none'" in html
    html = html.replace("script-src 'none'", f"script-src 'sha256-{digest}'", 1)
    return html.replace("<head>", f"<head>\n<script>{PROBE}</script>", 1)


def run_chromium(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=5000",
                           *extra, page.as_uri()], capture_output=True, text=True, timeout=120)


def probe(page: Path, profile: Path) -> dict:
    result = run_chromium(page, profile, "--dump-dom")
    match = re.search(r'<pre id="probe">images=(\d+) decoded=(\d+) sections=(\d+) errors=(.*?)</pre>', result.stdout)
    assert match, f"the probe did not run (exit {result.returncode}): {result.stderr[-2000:]}"
    return {"images": int(match[1]), "decoded": int(match[2]), "sections": int(match[3]), "errors": match[4]}


def test_report_loads_in_chromium_and_every_image_decodes(run_folder, tmp_path):
    report = write_report(run_folder)
    page = tmp_path / "probed.html"
    page.write_text(with_probe(report.read_text()))
    seen = probe(page, tmp_path / "profile")
    assert seen["images"] == 4 and seen["decoded"] == 4, seen
    assert seen["errors"] == "[]", seen
    assert seen["sections"] >= 6
    shot = tmp_path / "shot.png"
    result = run_chromium(report, tmp_path / "profile2", f"--screenshot={shot}", "--window-size=1200,2000")
    assert shot.exists() and shot.stat().st_size > 20_000, result.stderr[-2000:]


def test_the_probe_sees_a_broken_and_a_remote_image(run_folder, tmp_path):
    """The check can fail: an image that does not decode, and one that needs the network, are caught."""
    html = write_report(run_folder).read_text()
    html = html.replace("</main>", '<img src="data:image/png;base64,iVBORw0KGgoAAAA="><img src="http://127.0.0.1:9/x.png"></main>')
    page = tmp_path / "broken.html"
    page.write_text(with_probe(html))
    seen = probe(page, tmp_path / "profile")
    assert seen["images"] == 6 and seen["decoded"] == 4, seen
    assert "csp:img-src" in seen["errors"] and "IMG" in seen["errors"], seen
