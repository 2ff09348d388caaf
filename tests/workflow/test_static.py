"""Cheap checks of the workflow itself: lint, dry runs, and config errors stopping before any job."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

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
        "annotate_cells",
        "aggregate_pseudobulk",
        "test_composition",
        "score_signatures",
        "test_signatures",
        "score_development",
    ):
        assert rule in result.stdout, rule
    assert "download_sample" not in result.stdout  # the demo needs no network


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("config/samples.tsv", "\tloom\t", "\tloon\t"), "column 'format': 'loon' is not allowed"),
        (("config/config.yaml", "integration: harmony", "integration: scvi"), "atlas.integration"),
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


def test_simulated_design_aliased_with_study_is_warned(tmp_path):
    """The demo with every cord sample from one study and every adult from another."""
    import pandas as pd

    workdir = make_workdir(tmp_path)
    sheet = pd.read_csv(workdir / "config/samples.tsv", sep="\t", dtype=str, keep_default_na=False)
    sheet["study"] = sheet["condition"].map({"cord_blood": "study_A", "adult": "study_B"})
    sheet.to_csv(workdir / "config/samples.tsv", sep="\t", index=False)
    config = yaml.safe_load((workdir / "config/config.yaml").read_text())
    config["demo"]["n_cells_per_sample"] = 200  # small: only QC and the design check run
    config["qc"]["min_cells_per_sample"] = 20
    config["atlas"]["integration_key"] = "study"
    (workdir / "config/config.yaml").write_text(yaml.safe_dump(config))
    run_snakemake(workdir, "--cores", "2", "results/design/design_findings.tsv")
    findings = pd.read_csv(workdir / "results/design/design_findings.tsv", sep="\t")
    warnings = findings.query("severity == 'warning'")
    assert set(warnings["topic"]) == {"aliasing:study", "integration"}
    assert "every cord_blood sample has study ['study_A']" in " ".join(warnings["message"])
