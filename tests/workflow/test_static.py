"""Cheap checks of the workflow itself: lint, dry runs, and config errors stopping before any job."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import ROOT, SNAKEFILE, make_workdir, run_snakemake


def test_snakemake_lint_is_clean(tmp_path):
    workdir = make_workdir(tmp_path)
    result = run_snakemake(workdir, "--lint", check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Lints for" not in output, output


def test_snakefmt_and_ruff_are_clean():
    for command in (
        [sys.executable, "-m", "snakefmt", "--check", str(ROOT / "workflow")],
        [sys.executable, "-m", "ruff", "check", str(ROOT / "scripts"), str(ROOT / "tests")],
        [
            sys.executable,
            "-m",
            "ruff",
            "format",
            "--check",
            str(ROOT / "scripts"),
            str(ROOT / "tests"),
        ],
    ):
        result = subprocess.run(command, capture_output=True, text=True)
        assert result.returncode == 0, " ".join(command[2:4]) + "\n" + result.stdout + result.stderr


def test_dry_run_plans_every_stage(tmp_path):
    workdir = make_workdir(tmp_path)
    result = run_snakemake(workdir, "--dry-run", "--cores", "2")
    for rule in (
        "simulate_demo",
        "ingest_sample",
        "qc_sample",
        "summarise_qc",
        "merge_samples",
        "normalise_select_genes",
        "integrate_samples",
        "cluster_cells",
    ):
        assert rule in result.stdout, rule
    assert "download_sample" not in result.stdout  # the demo needs no network


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("config/samples.tsv", "\tloom\t", "\tloon\t"), "column 'format': 'loon' is not allowed"),
        (("config/config.yaml", "integration: none", "integration: scvi"), "atlas.integration"),
    ],
)
def test_bad_input_stops_before_any_job(tmp_path, edit, message):
    workdir = make_workdir(tmp_path)
    path, old, new = edit
    text = (workdir / path).read_text()
    assert old in text
    (workdir / path).write_text(text.replace(old, new, 1))
    result = run_snakemake(workdir, "--dry-run", "--cores", "2", check=False)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert not (workdir / "results").exists()
    assert not (workdir / "resources").exists()


def test_samples_key_switches_study(tmp_path):
    workdir = make_workdir(tmp_path)
    sheet = (workdir / "config/samples.tsv").read_text().splitlines()
    # keep two cord and two adult samples in a new sheet
    (workdir / "mine.tsv").write_text("\n".join(sheet[:3] + sheet[5:7]) + "\n")
    result = run_snakemake(workdir, "--dry-run", "--cores", "2", "--config", "samples=mine.tsv")
    assert "results/ingest/CB3.h5ad" not in result.stdout
    assert "results/ingest/CB2.h5ad" in result.stdout
    assert SNAKEFILE.exists()
