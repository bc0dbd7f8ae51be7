"""The README stays true: its two commands, the files it names, the commands and keys it lists."""

import re

import pytest
from conftest import REPO
from crossrep.cli import parser

pytestmark = pytest.mark.unit

README = (REPO / "README.md").read_text()


def test_two_setup_commands_are_make_targets_and_ci_runs_the_test_one():
    block = re.search(r"```bash\n(make demo.*?)```", README, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make demo", "make test"]
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^demo: install\n\t\$\(VENV\)/bin/crossrep run demo$", makefile, re.M)
    assert re.search(r"^test: install\n\t\$\(VENV\)/bin/python -m pytest -q$", makefile, re.M)
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_named_files_exist():
    for path in ("jobs/demo.yaml", "jobs/paper.yaml", "env.yml", "analysis", "slurm", "tests",
                 "src/crossrep/data/corpus"):
        assert (REPO / path).exists(), path
    for link in re.findall(r"\]\(([^)#]+)\)", README):
        if not link.startswith("http"):
            assert (REPO / link).exists(), link


def test_listed_commands_exist():
    sub = next(a for a in parser()._actions if a.dest == "command")
    for name in re.findall(r"`(run|resume|plan|extract|reduce|aggregate|report|status|prefetch|demo-data)[ `]", README):
        assert name in sub.choices


def test_job_keys_in_the_table_are_config_fields():
    from dataclasses import fields

    from crossrep import config

    sections = {"data": config.DataConfig, "models[i]": config.ModelConfig, "extract": config.ExtractConfig,
                "similarity": config.SimilarityConfig, "executor": config.ExecutorConfig,
                "analysis": config.AnalysisConfig}
    top = {f.name for f in fields(config.Job)}
    table = README.split("## Job specs")[1].split("## Data")[0]
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
