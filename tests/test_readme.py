"""The README and docs/ stay true: the two commands, the files they name, the commands and keys they list."""

import re

import pytest
from conftest import REPO
from crossrep.cli import parser

pytestmark = pytest.mark.unit

README = (REPO / "README.md").read_text()
DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [REPO / "README.md"] + DOCS


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_two_setup_commands_are_make_targets_and_ci_runs_the_test_one():
    block = re.search(r"```bash\n(make demo.*?)```", README, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make demo", "make test"]
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^demo: install\n\t\$\(VENV\)/bin/crossrep run demo$", makefile, re.M)
    assert re.search(r"^test: install\n\t\$\(VENV\)/bin/python -m pytest -q$", makefile, re.M)
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_readme_is_a_front_door():
    assert len(README.splitlines()) <= 220
    for section in ("## Two commands", "## Python API", "## Outputs", "## Documentation"):
        assert section in README, section


def test_every_docs_page_is_listed_in_the_readme():
    assert {p.name for p in DOCS} >= {"jobs.md", "models.md", "storage.md", "slurm.md", "statistics.md",
                                      "performance.md", "extending.md"}
    listed = README.split("## Documentation")[1]
    for page in DOCS:
        assert f"](docs/{page.name})" in listed, page.name


def test_named_files_exist():
    for path in ("jobs/demo.yaml", "jobs/paper.yaml", "env.yml", "analysis", "slurm", "tests",
                 "src/crossrep/data/corpus"):
        assert (REPO / path).exists(), path
    checked = 0
    for page in PAGES:
        text = page.read_text()
        for link, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", text):
            if link.startswith(("http://", "https://")):
                continue
            target = (page.parent / link).resolve() if link else page
            assert target.exists(), f"{page.relative_to(REPO)}: {link}"
            assert target.is_relative_to(REPO.resolve()), f"{page.relative_to(REPO)}: {link} leaves the repository"
            if anchor and target.suffix == ".md":
                headings = {_slug(h) for h in re.findall(r"^#+ (.+)$", target.read_text(), re.M)}
                assert anchor in headings, f"{page.relative_to(REPO)}: {link}#{anchor}"
            checked += 1
    assert checked >= 20
    for page in PAGES:  # no path that leaves the repository, linked or not
        assert not re.search(r"(^|[\s`(])\.\./shared\b", page.read_text()), page.name


def test_listed_commands_exist():
    sub = next(a for a in parser()._actions if a.dest == "command")
    found = 0
    for page in PAGES:
        for name in re.findall(r"`(run|resume|plan|extract|reduce|aggregate|report|status|repair|prefetch|demo-data)"
                               r"[ `]", page.read_text()):
            assert name in sub.choices, f"{page.name}: {name}"
            found += 1
    assert found >= 11


def test_job_keys_in_the_table_are_config_fields():
    from dataclasses import fields

    from crossrep import config

    sections = {"data": config.DataConfig, "models[i]": config.ModelConfig, "extract": config.ExtractConfig,
                "similarity": config.SimilarityConfig, "executor": config.ExecutorConfig,
                "analysis": config.AnalysisConfig, "retrieval": config.RetrievalConfig,
                "probes": config.ProbesConfig}
    top = {f.name for f in fields(config.Job)}
    table = (REPO / "docs" / "jobs.md").read_text().split("## Keys")[1].split("\n## ")[0]
    checked = 0
    for cell in re.findall(r"^\| ([^|]+) \|", table, re.M):
        keys = re.findall(r"`([a-z_.\[\]]+)`", cell)
        section = keys[0].partition(".")[0] if keys else ""
        for key in keys:
            head, _, sub = (section + key if key.startswith(".") else key).partition(".")
            if not sub:
                assert head in top, head
            else:
                assert sub.split(".")[0] in {f.name for f in fields(sections[head])}, f"{head}.{sub}"
            checked += 1
    assert checked >= 25


def test_family_table_lists_exactly_the_registered_families():
    from crossrep.models import families

    text = (REPO / "docs" / "models.md").read_text()
    table = text.split("## Families")[1].split("\n## ")[0]
    assert re.findall(r"^\| `([a-z0-9_]+)` \|", table, re.M) and \
        set(re.findall(r"^\| `([a-z0-9_]+)` \|", table, re.M)) == set(families())
