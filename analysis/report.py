"""The study report: one self-contained HTML page, `<out>/report/index.html`, from `<out>/findings.json` and the
PNGs in `<out>/figures/` (embedded as data URIs, inline CSS, no script, nothing fetched), so that it opens from
disk anywhere and can be mailed or archived as one file. Run with `crossrep report JOB`."""

from __future__ import annotations

import base64
import functools
import json
import math
import os
from pathlib import Path
from typing import Any

import jinja2

from crossrep.config import Job
from crossrep.errors import StoreError

DASH = "–"
VERDICTS = {"holds": "v-holds", "does not hold": "v-fails", "inconclusive": "v-inconclusive",
            "not applicable": "v-na", "too few languages": "v-na", "no sentence jackknife": "v-na"}
IMAGES = {".png": ("image/png", b"\x89PNG\r\n\x1a\n"), ".jpg": ("image/jpeg", b"\xff\xd8"),
          ".jpeg": ("image/jpeg", b"\xff\xd8"), ".gif": ("image/gif", b"GIF8"), ".svg": ("image/svg+xml", b"")}


def num(x: Any) -> str:
    """3 significant digits (1.2e-05 style when tiny or huge); ints as they are; None, NaN and inf as a dash."""
    if x is None or isinstance(x, bool):
        return DASH if x is None else str(x).lower()
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        return DASH if not math.isfinite(x) else "0" if x == 0 else f"{x:.3g}"
    text = str(x).strip()
    return DASH if text.lower() in ("", "nan", "none", "null") else text


def interval(low: Any, high: Any) -> str:
    """`[low, high]`, or a dash where neither end is a number."""
    lo, hi = num(low), num(high)
    return DASH if lo == hi == DASH else f"[{lo}, {hi}]"


def verdict_class(verdict: Any) -> str:
    """The badge's CSS class: green holds, red does not hold, grey inconclusive, light not applicable."""
    return VERDICTS.get(str(verdict or "").strip().lower(), "v-other")


def flat(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """A nested settings mapping as (dotted key, text) rows; lists are joined with commas."""
    if isinstance(value, dict):
        rows = []
        for k, v in value.items():
            rows += flat(v, f"{prefix}.{k}" if prefix else str(k))
        return rows
    if isinstance(value, (list, tuple)):
        return [(prefix, ", ".join(num(v) for v in value) or DASH)]
    return [(prefix, num(value))]


def embed(figures_dir: Path, name: str, caption: str, alt: str) -> dict:
    """A figure for the template: its data URI, or why it could not be embedded (the page says so, no error)."""
    fig = {"file": name, "caption": caption, "alt": alt, "uri": None, "problem": ""}
    path = Path(figures_dir) / name
    kind = IMAGES.get(path.suffix.lower())
    if Path(name).is_absolute() or ".." in Path(name).parts:
        fig["problem"] = "its name points outside the figures folder"
    elif kind is None:
        fig["problem"] = f"{path.suffix or 'no suffix'} is not an image type the page can embed"
    elif not path.is_file():
        fig["problem"] = f"no such file in {figures_dir} (was the aggregate stage run in full?)"
    else:
        data = path.read_bytes()
        if not data.startswith(kind[1]) or not data:
            fig["problem"] = f"{path} is not a {kind[0]} file"
        else:
            fig["uri"] = f"data:{kind[0]};base64,{base64.b64encode(data).decode('ascii')}"
    return fig


@functools.lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The template environment: the package's templates/, autoescaped, undefined names an error."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("crossrep.analysis", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.globals["verdict_class"] = verdict_class
    return env


def _measure(entry) -> tuple[str, str]:
    """A recorded measure's name and its label with parameters: {name: mknn, knn: 10} -> "mknn (knn 10)"."""
    if not isinstance(entry, dict):
        return str(entry), str(entry)
    name = str(entry.get("name", ""))
    params = ", ".join(f"{k} {num(v) if isinstance(v, float) else v}" for k, v in entry.items() if k != "name")
    return name, f"{name} ({params})" if params else name


def _order(names: list, extra) -> list[str]:
    """`names` then any of `extra` not among them, first seen first, without repeats."""
    out = [str(n) for n in names]
    for n in extra:
        if str(n) not in out:
            out.append(str(n))
    return out


def render(findings: dict, figures_dir: Path) -> str:
    """The report page (HTML text) for a findings.json mapping; figures are read from `figures_dir`."""
    methods = findings.get("methods") or {}
    results = findings.get("results") or []
    model_info = [m for m in methods.get("models") or [] if isinstance(m, dict)]
    models = _order([m.get("name", "") for m in model_info], (r.get("model", "") for r in results))
    measures = _order([_measure(m)[0] for m in methods.get("measures") or []], (r.get("measure", "") for r in results))
    described = {f.get("id"): f for f in findings.get("findings") or []}
    for r in results:  # a result for a finding that is not described still shows up
        described.setdefault(r.get("finding"), {"id": r.get("finding"), "title": "(not described)"})
    ids = sorted(described, key=lambda i: (0, i) if isinstance(i, (int, float)) else (1, str(i)))

    def row(r: dict) -> dict:
        study = str(r.get("study") or "")
        conf = r.get("confidence")
        return {"model": num(r.get("model")), "measure": num(r.get("measure")), "value": num(r.get("value")),
                "interval": interval(r.get("low"), r.get("high")), "p": num(r.get("p_value")),
                "p_adjusted": num(r.get("p_adjusted")),
                "confidence": f"{100 * conf:.4g} %" if isinstance(conf, (int, float)) else DASH,
                "verdict": str(r.get("verdict") or ""), "study": study, "n": num(r.get("n")),
                "detail": str(r.get("detail") or ""), "figure": r.get("figure") or "",
                "study_note": f"study: {study}" if study else "study: model not in the study"}

    def rank(r: dict) -> tuple:
        return models.index(str(r.get("model", ""))), measures.index(str(r.get("measure", "")))

    figs: dict[str, dict] = {}

    def figure(name: str, caption: str, alt: str) -> dict:
        """Embedded the first time; later mentions of the same file link to it (one copy, unique ids)."""
        repeat = name in figs
        if not repeat:
            figs[name] = embed(figures_dir, name, caption, alt)
        return dict(figs[name], repeat=repeat, caption=caption or figs[name]["caption"])

    sections = []
    for i in ids:
        f = described[i]
        mine = sorted((r for r in results if r.get("finding") == i), key=rank)
        title = str(f.get("title") or "")
        names = _order(f.get("figures") or [], (r["figure"] for r in mine if r.get("figure")))
        shown = [figure(n, "", f"Finding {i}: {title} ({n})") for n in names]
        sections.append({"id": i, "title": title, "claim": f.get("claim") or DASH,
                         "statistic": f.get("statistic") or DASH, "test": f.get("test") or DASH,
                         "results": [row(r) for r in mine], "figures": shown})
    summary = [{"measure": measure, "rows": [
        {"id": s["id"], "title": s["title"], "cells": [
            [row(r) for r in results if r.get("finding") == s["id"] and str(r.get("model", "")) == model
             and str(r.get("measure", "")) == measure] for model in models]} for s in sections]}
        for measure in measures]
    gallery = []
    for g in findings.get("figures") or []:
        g = g if isinstance(g, dict) else {"file": str(g)}
        caption = str(g.get("caption") or "")
        gallery.append(figure(str(g.get("file", "")), caption, caption or str(g.get("file", ""))))
    method_models = []
    for m in model_info:
        checkpoint = m.get("checkpoint")
        points = m.get("points") or {}
        method_models.append({
            "name": num(m.get("name")), "adapter": num(m.get("adapter")),
            "checkpoint": flat(checkpoint) if isinstance(checkpoint, dict) else [("", num(checkpoint))],
            "languages": [str(x) for x in m.get("languages") or []],
            "n": num(m.get("crossmodal_sentences")), "m": num(m.get("crosslingual_sentences")),
            "points": [(k, [str(p) for p in v]) for k, v in points.items()] if isinstance(points, dict) else
            [("points", [str(p) for p in points])]})
    invariances = methods.get("invariances") or {}
    measure_rows = [{"label": _measure(x)[1], "invariances": ", ".join(invariances.get(_measure(x)[0]) or [])
                     or DASH} for x in methods.get("measures") or []]
    page = {
        "readouts": readout_section(findings.get("readouts") or {}, figure, findings.get("alpha")),
        "lens": lens_section(findings.get("lens") or {}, figure, findings.get("alpha")),
        "job": num(findings.get("job")), "version": num(findings.get("crossrep_version")),
        "created": num(findings.get("created")), "alpha": num(findings.get("alpha")),
        "language_bootstrap": num(findings.get("language_bootstrap")),
        "permutations": num(findings.get("permutations")), "bootstrap": num(findings.get("bootstrap")),
        "seed": num(findings.get("seed")), "models": models, "summary": summary, "findings": sections,
        "jackknife": num(findings.get("jackknife")), "speakers": num(findings.get("speakers")),
        "multiplicity": findings.get("multiplicity") or {}, "calibration": calibration(findings.get("calibration")),
        "gallery": gallery,
        "methods": {"models": method_models, "measures": measure_rows,
                    "families": [str(x) for x in methods.get("families") or []],
                    "seeds": flat(methods.get("seeds") or {}), "started": num(methods.get("started")),
                    "finished": num(methods.get("finished")),
                    "settings": [("Similarity", flat(methods.get("similarity") or {})),
                                 ("Analysis", flat(methods.get("analysis") or {})),
                                 ("Retrieval", flat((findings.get("readouts") or {}).get("retrieval") or {})),
                                 ("Probes", flat((findings.get("readouts") or {}).get("probe_settings") or {}))]}}
    return environment().get_template("report.html.j2").render(**page)


READOUT_CAPTIONS = {
    "fig7_retrieval": "top-1 retrieval over depth: speech retrieving its own transcript (by resource level) and "
                      "translations across languages, with chance 1/N",
    "fig8_retrieval_languages": "speech of one language retrieving the text of another at the last cross-modal "
                                "pair (diagonal: its own transcripts)",
    "fig9_probes": "linear probes over depth: language from text, from speech, from both; modality",
}


def readout_section(readouts: dict, figure, alpha: Any = None) -> dict:
    """The "Retrieval and probes" section: per model and scoring one sentence on the onset of cross-modal
    retrieval (with the last pair for how well), the probe table, the figures."""
    onset = [r for r in readouts.get("onset") or [] if isinstance(r, dict)]
    statements = []
    for key in dict.fromkeys((r.get("model"), r.get("scoring")) for r in onset):
        rows = sorted((r for r in onset if (r.get("model"), r.get("scoring")) == key), key=lambda r: r["depth"])
        first = next((r for r in rows if r.get("onset")), None)
        last = rows[-1]

        def said(r):
            return (f"{num(r['accuracy'])} ({interval(r['low'], r['high'])} at {100 * r['confidence']:.4g} %; "
                    f"Holm-adjusted p {num(r['p_adjusted'])})")

        if first is None:
            text = (f"speech does not retrieve its own transcript above chance at any of its {len(rows)} points "
                    f"(α = {num(alpha)}, Holm's adjustment over them); at the last pair {last['pair']}: "
                    f"{said(last)}")
        else:
            text = (f"speech first retrieves its own transcript above chance at {first['pair']} (depth "
                    f"{num(first['depth'])}): top-1 accuracy {said(first)}, chance {num(first['chance'])}; "
                    f"at the last pair {last['pair']}: {said(last)}")
        statements.append({"model": num(key[0]), "scoring": num(key[1]), "text": text,
                           "verdict": "holds" if first is not None else "does not hold"})
    probes = [{"model": num(r.get("model")), "probe": str(r.get("label") or r.get("probe")),
               "which": str(r.get("which")), "point": str(r.get("point")), "accuracy": num(r.get("accuracy")),
               "interval": interval(r.get("low"), r.get("high")), "chance": num(r.get("chance")),
               "p": num(r.get("p"))} for r in readouts.get("probes") or [] if isinstance(r, dict)]
    figures = [figure(name + ".png", READOUT_CAPTIONS.get(name, ""), READOUT_CAPTIONS.get(name, name))
               for name in readouts.get("figures") or []]
    return {"statements": statements, "probes": probes, "figures": figures} if statements or probes else {}


METRIC_WORDS = {"recall_10": "transcript recall@10", "logprob": "mean best log-probability"}


def lens_section(lens: dict, figure, alpha: Any = None) -> dict:
    """The "Logit lens" section: per model and metric, the first point where the audio positions read the
    transcript's tokens better than another sentence's (with its interval), the last point, the top tokens."""
    onset = [r for r in lens.get("onset") or [] if isinstance(r, dict)]
    statements = []
    for key in dict.fromkeys((r.get("model"), r.get("metric")) for r in onset):
        rows = sorted((r for r in onset if (r.get("model"), r.get("metric")) == key), key=lambda r: r["depth"])
        first = next((r for r in rows if r.get("onset")), None)
        last = rows[-1]

        def said(r):
            conf = f"{100 * r['confidence']:.4g} %" if _finite(r.get("confidence")) else "no interval"
            return (f"{num(r['own'])} against {num(r['chance'])} for another sentence's transcript (difference "
                    f"{num(r['difference'])}, {interval(r['low'], r['high'])} at {conf}; Holm-adjusted p "
                    f"{num(r['p_adjusted'])})")

        what = METRIC_WORDS.get(str(key[1]), str(key[1]))
        if first is None:
            text = (f"at no point of {len(rows)} does the {what} at the audio positions exceed the paired chance "
                    f"level (α = {num(alpha)}, Holm over the points); at {last['point']}: {said(last)}")
        else:
            text = (f"the audio positions first read the transcript at {first['point']} (depth "
                    f"{num(first['depth'])}): {what} {said(first)}; at {last['point']}: {said(last)}")
        statements.append({"model": num(key[0]), "metric": what, "text_input": num(rows[0].get("text_input")),
                           "text": text, "verdict": "holds" if first is not None else "does not hold"})
    top = [{"model": num(r.get("model")), "where": f"{r.get('lang')} sentence {r.get('sentence')}",
            "point": str(r.get("point")), "tokens": " | ".join(map(str, r.get("tokens") or []))}
           for r in lens.get("top") or [] if isinstance(r, dict)]
    figures = [figure(name + ".png", "logit lens at the audio positions: own transcript against another "
                                     "sentence's, over depth", "logit lens over depth")
               for name in lens.get("figures") or []]
    settings = flat(lens.get("settings") or {})
    return {"statements": statements, "top": top, "figures": figures, "settings": settings} if statements else {}


def _finite(x) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def calibration(summary: Any) -> dict:
    """The calibration table of the installed version (bench/calibration.py) as rows for the methods section."""
    if not isinstance(summary, dict) or not summary.get("null"):
        return {}
    rows = []
    for kind, label in (("none", "no sentence correspondence"), ("absent", "structure, findings absent")):
        part = summary["null"].get(kind) or {}
        for f, entry in (part.get("findings") or {}).items():
            for m in summary.get("measures") or []:
                e = entry.get(m) or {}
                n = e.get("n") or 0
                if n:
                    rows.append({"data": label, "finding": f, "measure": m, "n": n,
                                 "holds": f"{e['false_holds'] / n:.1%}",
                                 "fails": f"{e['false_does_not_hold'] / n:.1%}",
                                 "familywise": f"{entry['familywise'] / part['seeds']:.1%}" if m == summary[
                                     "measures"][0] else ""})
    power = []
    for strength, table in (summary.get("power") or {}).items():
        for f, entry in table.items():
            for m in summary.get("measures") or []:
                e = entry.get(m) or {}
                if e.get("n"):
                    power.append({"strength": strength, "finding": f, "measure": m,
                                  "holds": f"{e['holds'] / e['n']:.0%}"})
    config = summary.get("config") or {}
    return {"rows": rows, "power": power, "version": num(summary.get("crossrep_version")),
            "config": ", ".join(f"{k} {v}" for k, v in config.items()), "alpha": num(summary.get("alpha"))}


def run(job: Job) -> Path:
    """Read `<out>/findings.json`, write `<out>/report/index.html` (a temp file in the same folder, then
    os.replace, so a reader never sees half a page); return its path."""
    source = job.out / "findings.json"
    if not source.is_file():
        raise StoreError(f"{source} not found: run the aggregate stage first (crossrep aggregate {job.name})")
    try:
        findings = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise StoreError(f"{source}: unreadable ({exc}); run the aggregate stage again") from None
    if not isinstance(findings, dict):
        raise StoreError(f"{source}: expected a JSON object with findings and results; run the aggregate stage again")
    html = render(findings, job.out / "figures")
    target = job.out / "report" / "index.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(html, encoding="utf-8")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target
