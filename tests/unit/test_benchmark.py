"""The benchmark's bookkeeping: rule benchmark files, stage tables, exponents (no workflow run)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cordatlas.benchmark.summary import (
    NOT_TIMED,
    RULE_STAGES,
    exponents,
    read_rule_benchmarks,
    stage_table,
)

RULES = Path(__file__).resolve().parents[2] / "workflow" / "rules"
HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def _benchmark(folder: Path, rule: str, job: str, seconds: float, rss_mb: float) -> None:
    (folder / rule).mkdir(parents=True, exist_ok=True)
    (folder / rule / f"{job}.tsv").write_text(
        HEADER + f"{seconds}\t0:00:01\t{rss_mb}\t1\t1\t1\t0\t0\t50\t1\n"
    )


def test_every_rule_of_the_workflow_has_a_stage():
    names = set()
    for path in RULES.glob("*.smk"):
        names |= set(re.findall(r"^(?:rule|checkpoint) (\w+):", path.read_text(), re.M))
    assert names, "no rules found"
    assert names - set(RULE_STAGES) - NOT_TIMED == set()


def test_rule_benchmarks_sum_jobs_and_keep_the_largest_peak(tmp_path):
    _benchmark(tmp_path, "qc_sample", "S1", 10.0, 1024)
    _benchmark(tmp_path, "qc_sample", "S2", 30.0, 3072)
    _benchmark(tmp_path, "cluster_cells", "cluster_cells", 5.0, 512)
    _benchmark(tmp_path, "simulate_demo", "simulate_demo", 99.0, 9999)
    rules = read_rule_benchmarks(tmp_path).set_index("rule")
    assert "simulate_demo" not in rules.index
    assert rules.loc["qc_sample", "jobs"] == 2
    assert rules.loc["qc_sample", "s"] == pytest.approx(40.0)
    assert rules.loc["qc_sample", "max_job_s"] == pytest.approx(30.0)
    assert rules.loc["qc_sample", "peak_gb"] == pytest.approx(3.0)
    plain = pd.DataFrame(
        {"stage": ["qc", "cluster", "cluster"], "s": [4.0, 1.0, 1.5], "peak_gb": [1.0, 2.0, 2.5]}
    )
    stages = stage_table(read_rule_benchmarks(tmp_path), plain).set_index("stage")
    assert stages.loc["qc", "ratio"] == pytest.approx(10.0)
    assert stages.loc["cluster", "ratio"] == pytest.approx(2.0)
    assert stages.loc["cluster", "plain_peak_gb"] == pytest.approx(2.5)


def test_an_unknown_rule_is_refused(tmp_path):
    _benchmark(tmp_path, "new_rule", "x", 1.0, 1)
    with pytest.raises(ValueError, match="new_rule"):
        read_rule_benchmarks(tmp_path)


def test_exponents_recover_planted_growth():
    sizes = [25_000, 50_000, 100_000, 200_000]
    per_size = {
        n: pd.DataFrame({"stage": ["qc", "cluster"], "workflow_s": [2e-3 * n, 1e-4 * n**1.3]})
        for n in sizes
    }
    b = exponents(per_size)
    assert b["qc"] == pytest.approx(1.0, abs=0.01)
    assert b["cluster"] == pytest.approx(1.3, abs=0.01)
    with pytest.raises(ValueError):
        exponents({25_000: per_size[25_000]})
    assert np.isfinite(b.to_numpy()).all()


def test_quality_numbers_by_hand():
    from cordatlas.benchmark.quality import cluster_agreement, de_recovery, label_agreement

    truth_cells = pd.DataFrame(
        {"sample": ["S"] * 5, "barcode": list("abcde"),
         "cell_type": ["T", "T", "B", "B", "doublet"]}
    )  # fmt: skip
    obs = pd.DataFrame(
        {"sample": ["S"] * 5, "barcode": list("abcde"), "cell_type": ["T", "B", "B", "B", "T"]},
        index=list("abcde"),
    )
    agreement = label_agreement(obs, truth_cells)
    assert agreement["label_accuracy"] == pytest.approx(3 / 4)  # the doublet is not counted
    truth_de = pd.DataFrame(
        {"cell_type": ["T", "T", "T", "B"], "gene": ["g1", "g2", "g3", "g1"],
         "log2FC": [2.0, -1.5, 0.5, 1.0]}
    )  # fmt: skip
    de = pd.DataFrame(
        {"cell_type": ["T", "T", "T", "T"], "gene": ["g1", "g2", "g9", "g3"],
         "log2FC": [1.0, 1.0, 1.0, 1.0], "padj": [0.01, 0.01, 0.01, 0.5]}
    )  # fmt: skip
    recovery = de_recovery(de, truth_de, tested={"T"})
    assert recovery["de_recall"] == pytest.approx(1 / 2)  # g1 right; g2 wrong sign
    assert recovery["de_fdp"] == pytest.approx(1 / 3)  # g9 was not planted
    other = obs.assign(leiden=["0", "0", "1", "1", "1"])
    assert cluster_agreement(other, other.assign(leiden=["5", "5", "7", "7", "7"])) == 1.0


def test_plain_warm_up_runs_every_step_of_the_script(monkeypatch):
    """The untimed warm-up goes through the timed script's own steps, in its order."""
    from cordatlas.benchmark import plain

    monkeypatch.setattr(plain, "WARM_UP_CELLS", 400)  # the steps, not pynndescent's path
    timings = plain.warm_up(seed=0)
    assert list(timings["step"]) == list(plain.PLAIN_STEPS)
    assert list(timings["stage"]) == list(plain.PLAIN_STEPS.values())
    assert timings["n_cells"].iloc[0] == 400
    assert (timings["s"] >= 0).all() and (timings["peak_gb"] > 0).all()
