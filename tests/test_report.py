"""The study report: one self-contained HTML page from a findings.json (a fake one written here, so the other
stages are not needed), checked by parsing and by loading it in headless Chromium."""

from __future__ import annotations

import base64
import collections
import html
import json
import math
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from browser import load_in_browser
from crossrep.cli import main
from crossrep.analysis import report
from crossrep.config import load_job
from crossrep.errors import StoreError

pytestmark = pytest.mark.unit

PNG = b"\x89PNG\r\n\x1a\n"
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
MODELS = ("seamless", "salmonn")
MEASURES = ("svcca", "cka")
VERDICTS = ("holds", "does not hold", "inconclusive", "not applicable")


def draw(path: Path, color: str, size: tuple[float, float]) -> None:
    """A small PNG that differs from the others (colour and size), so a swapped figure is caught."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size, dpi=40)
    ax.plot([0, 1, 2], [0, 1, 0.5], color=color)
    ax.set_title(path.stem)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def make_findings(out: Path) -> dict:
    """Write `<out>/figures/*.png` and return a findings.json mapping in the aggregate stage's schema, with
    every verdict, NaN and null values, a study without the model, a missing figure and a gallery entry."""
    draw(out / "figures" / "fig2_crossmodal.png", "tab:blue", (3, 2))
    draw(out / "figures" / "fig2_crossmodal_cka.png", "tab:green", (3, 2.5))
    draw(out / "figures" / "fig3_crosslingual.png", "tab:red", (2.5, 2))
    draw(out / "figures" / "fig4_tsne.png", "tab:purple", (2, 2))
    figures = {1: ["fig2_crossmodal.png"], 3: ["fig9_missing.png"], 4: ["fig3_crosslingual.png"]}
    findings = [{"id": i, "title": f"Finding title {i} <&>", "claim": f"Claim {i}.", "statistic": f"Statistic {i}.",
                 "test": f"Test {i}: resampling languages.", "figures": figures.get(i, [])} for i in range(1, 7)]
    results = []
    for i in range(1, 7):
        for k, model in enumerate(MODELS):
            for j, measure in enumerate(MEASURES):
                q = (i + k + j) % 4
                results.append({
                    "finding": i, "model": model, "measure": measure, "verdict": VERDICTS[q],
                    "value": math.nan if q == 3 else 0.41234 * i, "low": None if q == 3 else 0.2,
                    "high": math.nan if q == 3 else 0.6, "p_value": [0.001, 1.2e-05, 0.5, math.nan][q],
                    "study": "" if model == "salmonn" and i == 2 else "holds", "n": 30 - i,
                    "detail": f"layers 1..{i}", "figure": ("fig2_crossmodal_cka.png" if measure == "cka" else
                                                           "fig2_crossmodal.png") if i == 1 else None})
    models = [{"name": "seamless", "adapter": "seamless_m4t_v2", "checkpoint": "facebook/seamless-m4t-v2-large",
               "languages": ["eng", "deu", "khm"], "crossmodal_sentences": 40, "crosslingual_sentences": 32,
               "points": {"text": ["input", "layer1", "output"], "speech": ["input", "adaptor"]}},
              {"name": "salmonn", "adapter": "salmonn", "checkpoint": {"salmonn": "s.pth", "llm": {"path": "v"}},
               "languages": ["eng", "deu"], "crossmodal_sentences": 40, "crosslingual_sentences": 32,
               "points": {"text": ["layer1"], "speech": ["layer1"]}}]
    return {"crossrep_version": "0.1.0", "created": "2026-12-01T19:30:00+00:00", "job": "fixture-job",
            "alpha": 0.05, "language_bootstrap": 1000, "permutations": 10, "bootstrap": 10, "seed": 0,
            "findings": findings, "results": results,
            "figures": [{"file": "fig4_tsne.png", "caption": "t-SNE at a middle layer"}],
            "methods": {"models": models, "measures": list(MEASURES),
                        "families": ["crossmodal", "text", "speech", "text_speech"],
                        "similarity": {"variance": 0.9, "epsilon": 1e-10, "odd": math.nan},
                        "analysis": {"levels": ["high", "low"]},
                        "seeds": {"data": 0, "similarity": 0, "analysis": 0, "tsne": 0},
                        "started": "2026-12-01T19:00:00+00:00", "finished": "2026-12-01T19:29:00+00:00"}}


class Page(HTMLParser):
    """Collects ids, images (with the id of their <figure>), src/href values, and unbalanced tags."""

    def __init__(self, text: str):
        super().__init__()
        self.ids, self.images, self.links, self.stack, self.problems = [], [], [], [], []
        self.figure = None
        self.feed(text)
        self.close()
        self.problems += [f"unclosed <{t}>" for t in self.stack]

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.append(a["id"])
        self.links += [a[k] for k in ("src", "href") if k in a]
        if tag == "figure":
            self.figure = a.get("id")
        if tag == "img":
            self.images.append((self.figure, a.get("src", ""), a.get("alt", "")))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag == "figure":
            self.figure = None
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes <{self.stack[-1] if self.stack else 'nothing'}>")
        else:
            self.stack.pop()


@pytest.fixture
def out(tmp_path) -> Path:
    """An output folder with figures/ and findings.json as the aggregate stage leaves them."""
    out = tmp_path / "out"
    (out / "figures").mkdir(parents=True)
    (out / "findings.json").write_text(json.dumps(make_findings(out)))  # NaN as JSON's NaN token, like Python
    return out


def test_render_sections_summary_images_and_no_network(out):
    findings = make_findings(out)
    text = report.render(findings, out / "figures")
    page = Page(text)
    assert page.problems == []
    assert len(page.ids) == len(set(page.ids)), "duplicate ids"
    for f in findings["findings"]:
        assert f"finding-{f['id']}" in page.ids
        assert html.escape(f["title"]) in text and f["claim"] in text and f["test"] in text
    summary = text[text.index('id="summary"'):text.index('id="finding-1"')]
    badges = re.findall(r'<span class="badge v-[a-z]+">([^<]*)</span>', summary)
    assert collections.Counter(badges) == collections.Counter(r["verdict"] for r in findings["results"])
    assert summary.index(">svcca</h3>") < summary.index(">cka</h3>")
    assert "study: holds" in summary and "study: model not in the study" in summary
    assert "0.412 [0.2, 0.6]" in summary and "p = 1.2e-05" in summary
    assert re.search(r"\bnan\b", text, re.I) is None and "–" in text
    assert "<script" not in text and not any(re.match(r"\s*(https?:)?//", link) for link in page.links)
    assert not re.search(r"https?://", text)
    embedded = {}
    for figure, src, alt in page.images:
        assert alt and figure and figure.startswith("fig-")
        head, _, data = src.partition(",")
        assert head == "data:image/png;base64"
        raw = base64.b64decode(data, validate=True)
        assert raw.startswith(PNG) and raw == (out / "figures" / figure[4:]).read_bytes()
        embedded[figure[4:]] = raw
    assert sorted(embedded) == ["fig2_crossmodal.png", "fig2_crossmodal_cka.png", "fig3_crosslingual.png",
                                "fig4_tsne.png"]
    assert "t-SNE at a middle layer" in text[text.index('id="gallery"'):]
    methods = text[text.index('id="methods"'):]
    for word in ("facebook/seamless-m4t-v2-large", "llm.path", "3: eng, deu, khm", "text_speech", "tsne = 0",
                 "1000", "0.1.0", "2026-12-01T19:30:00+00:00", "1e-10"):
        assert word in methods, word


def test_missing_figure_is_said_in_the_page(out):
    findings = make_findings(out)
    text = report.render(findings, out / "figures")
    assert re.search(r'class="missing">Figure <code>fig9_missing\.png</code> is missing', text)
    section = text[text.index('id="finding-3"'):text.index('id="finding-4"')]
    assert "fig9_missing.png" in section and "<img" not in section
    shutil.rmtree(out / "figures")
    text = report.render(findings, out / "figures")
    assert "<img" not in text and text.count('class="missing"') == 5


def test_number_format():
    assert [report.num(x) for x in (0.001, 1.2e-05, 0.41234, 1234.5, 0.0, 7, math.nan, None, math.inf, "nan")] == \
        ["0.001", "1.2e-05", "0.412", "1.23e+03", "0", "7", "–", "–", "–", "–"]
    assert report.interval(None, math.nan) == "–" and report.interval(0.1, None) == "[0.1, –]"


def test_run_writes_the_page_and_names_a_missing_findings_file(out, tmp_path):
    job = load_job("demo", [f"out={out}"])
    path = report.run(job)
    assert path == out / "report" / "index.html" and os.listdir(path.parent) == ["index.html"]
    assert path.read_text(encoding="utf-8") == report.render(json.loads((out / "findings.json").read_text()),
                                                             out / "figures")
    empty = load_job("demo", [f"out={tmp_path / 'empty'}"])
    with pytest.raises(StoreError, match=re.escape(str(tmp_path / "empty" / "findings.json")) + ".*aggregate"):
        report.run(empty)


def test_report_command(out, tmp_path, capsys):
    assert main(["report", "demo", "--set", f"out={out}"]) == 0
    assert capsys.readouterr().out.strip() == str(out / "report" / "index.html")
    assert main(["report", "demo", "--set", f"out={tmp_path / 'none'}"]) == 2
    err = capsys.readouterr().err
    assert "findings.json not found: run the aggregate stage first" in err


@pytest.mark.browser
def test_page_loads_in_headless_chromium(out, tmp_path, chromium):
    path = report.run(load_job("demo", [f"out={out}"]))
    page = path.read_text(encoding="utf-8")
    assert page.count("<head>") == 1
    result = load_in_browser(path, tmp_path, chromium)
    assert result["errors"] == []
    assert len(result["images"]) == page.count("<img ") == 4
    assert all(i["width"] > 0 and i["height"] > 0 for i in result["images"]), result["images"]


def test_summary_states_the_adjustment_and_methods_quote_the_calibration(out):
    record = json.loads((out / "findings.json").read_text())
    record["multiplicity"] = {"family": "each finding over every model and measure of this report",
                              "method": "Holm's step-down (family-wise error rate at alpha under any dependence)",
                              "alpha": 0.05, "tests": 30, "families": 6, "holds": 7, "does_not_hold": 1,
                              "holds_unadjusted": 11}
    record["results"][0].update(p_adjusted=0.004, confidence=0.9983)
    record["calibration"] = {"alpha": 0.05, "measures": ["svcca"], "crossrep_version": "0.1.0",
                             "config": {"languages": 15, "seeds": 500},
                             "null": {"absent": {"seeds": 500, "findings": {"4": {
                                 "svcca": {"n": 500, "false_holds": 9, "false_does_not_hold": 11, "covered": 480},
                                 "familywise": 20}}}},
                             "power": {"1.0": {"4": {"svcca": {"n": 60, "holds": 60}}}}}
    page = report.render(record, out / "figures")
    assert "7 of 30 tests hold after adjustment" in page and "11 would hold unadjusted" in page
    assert "Holm&#39;s step-down" in page or "Holm's step-down" in page
    assert "99.83 %" in page and "adjusted 0.004" in page
    calib = page.split('id="calibration"')[1].split("</table>")[0]
    assert "structure, findings absent" in calib and "1.8%" in calib and "2.2%" in calib and "4.0%" in calib
    assert "100%" in page.split('id="calibration"')[1]
    assert Page(page).problems == []
    del record["calibration"]
    assert "No calibration table is installed" in report.render(record, out / "figures")
