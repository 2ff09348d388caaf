"""Subset shares within lineages and compartment-standardised signature comparisons."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from cordatlas.compare.compartments import (
    ADJUSTED_COLUMNS,
    EXPLAINED,
    PERSISTS,
    SUBSET_COLUMNS,
    compartment_adjusted,
    lineage_of_labels,
    standardised_means,
    subset_composition,
)
from cordatlas.compare.donor_stats import replicate_table
from cordatlas.params import Contrast, default_params
from cordatlas.vocabulary import DONOR_LEVEL, NOT_TESTABLE

CORD, ADULT = "cord_blood", "adult"
CONTRAST = Contrast(CORD, ADULT)
COMPARISON = dataclasses.replace(
    default_params().comparison, covariates=(), exclude_cell_types=("unassigned",)
)
LABELS = {
    "CD4_naive": "T",
    "CD4_memory": "T",
    "T_lineage": "T",
    "NK_CD56dim": "NK",
    "NK_lineage": "NK",
}


def _obs(counts: dict[str, dict[str, int]], conditions: dict[str, str]) -> pd.DataFrame:
    """One row per cell from {donor: {cell_type: n}}."""
    rows = [
        {"donor": d, "condition": conditions[d], "cell_type": t}
        for d, types in counts.items()
        for t, n in types.items()
        for _ in range(n)
    ]
    obs = pd.DataFrame(rows)
    obs.index = [f"cell{i}" for i in range(len(obs))]
    return obs


def _design(obs: pd.DataFrame) -> pd.DataFrame:
    return replicate_table(obs, replicate_key="donor")


def test_lineage_of_labels_from_panel():
    panel = {
        "version": "1",
        "cell_types": {
            "CD4_naive": {"lineage": "T", "markers": ["CCR7"], "sources": ["x"]},
            "Other": {"markers": ["A"], "sources": ["x"]},
        },
    }
    assert lineage_of_labels(panel) == {"CD4_naive": "T", "T_lineage": "T"}


def test_standardised_means_by_hand():
    # donor A: naive 1, 2, 3 (mean 2), memory 5; donor B: naive 0, memory 4, 6, 8 (mean 6)
    scores = pd.DataFrame({"s": [1.0, 2, 3, 5, 0, 4, 6, 8]})
    subtype = pd.Series(["naive"] * 3 + ["memory"] + ["naive"] + ["memory"] * 3)
    donor = pd.Series(["A"] * 4 + ["B"] * 4)
    crude, standard, weights = standardised_means(
        scores, subtype, donor, subtypes=["naive", "memory"]
    )
    # pooled mix: 4 naive and 4 memory cells -> 0.5 each
    assert weights.to_dict() == pytest.approx({"naive": 0.5, "memory": 0.5})
    assert crude.loc["A", "s"] == pytest.approx(11 / 4)
    assert crude.loc["B", "s"] == pytest.approx(18 / 4)
    assert standard.loc["A", "s"] == pytest.approx(0.5 * 2 + 0.5 * 5)
    assert standard.loc["B", "s"] == pytest.approx(0.5 * 0 + 0.5 * 6)


def test_subset_proportions_by_hand_with_lineage_denominator():
    counts = {
        "c1": {"CD4_naive": 6, "CD4_memory": 2, "T_lineage": 2, "NK_CD56dim": 50},
        "c2": {"CD4_naive": 8, "CD4_memory": 2, "NK_CD56dim": 5},
        "c3": {"CD4_naive": 7, "CD4_memory": 3, "NK_CD56dim": 5},
        "a1": {"CD4_naive": 2, "CD4_memory": 8, "NK_CD56dim": 5},
        "a2": {"CD4_naive": 3, "CD4_memory": 7, "NK_CD56dim": 5},
        "a3": {"CD4_naive": 4, "CD4_memory": 4, "unassigned": 9},
    }
    conditions = {d: CORD if d.startswith("c") else ADULT for d in counts}
    obs = _obs(counts, conditions)
    table = subset_composition(obs, _design(obs), COMPARISON, CONTRAST, labels=LABELS)
    assert list(table.columns) == SUBSET_COLUMNS
    t = table[table["lineage"] == "T"].set_index("cell_type")
    assert list(t.index) == ["CD4_naive", "CD4_memory", "T_lineage"]
    # the NK cells are not in the T denominator: c1 is 6 / 10 naive, not 6 / 60
    assert t.at["CD4_naive", "mean_proportion_condition"] == pytest.approx((0.6 + 0.8 + 0.7) / 3)
    assert t.at["CD4_naive", "mean_proportion_reference"] == pytest.approx((0.2 + 0.3 + 0.5) / 3)
    assert t.at["T_lineage", "mean_proportion_condition"] == pytest.approx(0.2 / 3)
    assert t.at["CD4_naive", "evidence"] == DONOR_LEVEL
    assert t.at["CD4_naive", "difference"] > 0
    assert t["padj"].notna().all()
    assert "not resolved" in t.at["T_lineage", "note"]
    # NK: one subtype present -> not testable, the reason in the note
    nk = table[table["lineage"] == "NK"]
    assert set(nk["evidence"]) == {NOT_TESTABLE}
    assert nk["pvalue"].isna().all()
    assert "1 subtype" in nk["note"].iloc[0]


def test_subset_composition_too_few_donors_not_testable():
    counts = {
        "c1": {"CD4_naive": 6, "CD4_memory": 4},
        "a1": {"CD4_naive": 3, "CD4_memory": 7},
        "a2": {"CD4_naive": 2, "CD4_memory": 8},
    }
    conditions = {"c1": CORD, "a1": ADULT, "a2": ADULT}
    obs = _obs(counts, conditions)
    table = subset_composition(obs, _design(obs), COMPARISON, CONTRAST, labels=LABELS)
    assert set(table["evidence"]) == {NOT_TESTABLE}
    assert table["note"].str.contains("fewer than 2 replicates").all()


def _simulated(*, within_effect: float, seed: int = 0, n_cells: int = 300):
    """4 cord donors mostly naive, 4 adult donors mostly memory; naive cells score 1 lower."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(8):
        cord = i < 4
        donor = f"{'c' if cord else 'a'}{i}"
        naive_share = rng.uniform(0.8, 0.9) if cord else rng.uniform(0.35, 0.45)
        naive = rng.random(n_cells) < naive_share
        shift = within_effect if cord else 0.0
        donor_noise = rng.normal(0, 0.05)
        score = np.where(naive, 0.0, 1.0) + shift + donor_noise + rng.normal(0, 0.3, n_cells)
        frames.append(pd.DataFrame({
            "donor": donor, "condition": CORD if cord else ADULT,
            "cell_type": np.where(naive, "CD4_naive", "CD4_memory"),
            "regulatory": score, "noise": rng.normal(0, 0.3, n_cells),
        }))  # fmt: skip
    cells = pd.concat(frames, ignore_index=True)
    cells.index = [f"cell{i}" for i in range(len(cells))]
    obs = cells[["donor", "condition", "cell_type"]]
    return cells[["regulatory", "noise"]], obs


def test_mix_difference_is_explained_by_compartments():
    scores, obs = _simulated(within_effect=0.0)
    table = compartment_adjusted(scores, obs, _design(obs), COMPARISON, CONTRAST, labels=LABELS)
    assert list(table.columns) == ADJUSTED_COLUMNS
    row = table.set_index("signature").loc["regulatory"]
    assert row["subtypes_used"] == "CD4_naive,CD4_memory"
    assert row["difference_crude"] < -0.3  # cord mostly naive: lower crude score
    assert row["padj_crude"] < 0.01
    assert abs(row["difference_adjusted"]) < 0.1
    assert row["padj_adjusted"] > COMPARISON.alpha
    assert row["ci_low_adjusted"] < 0 < row["ci_high_adjusted"]
    assert row["share_explained_by_mix"] > 0.8
    assert row["verdict"] == EXPLAINED
    assert row["evidence"] == DONOR_LEVEL
    # and the subset composition sees the naive excess itself
    subsets = subset_composition(obs, _design(obs), COMPARISON, CONTRAST, labels=LABELS)
    naive = subsets.set_index("cell_type").loc["CD4_naive"]
    assert naive["difference"] > 0 and naive["padj"] < 0.01


def test_within_compartment_effect_is_kept_after_adjustment():
    scores, obs = _simulated(within_effect=0.8)
    table = compartment_adjusted(scores, obs, _design(obs), COMPARISON, CONTRAST, labels=LABELS)
    row = table.set_index("signature").loc["regulatory"]
    # crude: +0.8 within minus ~0.45 from the mix; adjusted: the +0.8 alone
    assert row["difference_adjusted"] == pytest.approx(0.8, abs=0.15)
    assert row["ci_low_adjusted"] < 0.8 < row["ci_high_adjusted"]
    assert row["padj_adjusted"] < 0.01
    assert row["difference_adjusted"] > row["difference_crude"]
    assert row["verdict"] == PERSISTS
    assert table.set_index("signature").loc["noise", "verdict"] == "no_difference"


def test_adjusted_not_testable_rows():
    scores, obs = _simulated(within_effect=0.0, n_cells=200)
    # NK: one subtype only
    nk = obs.index[:30]
    obs = obs.copy()
    obs.loc[nk, "cell_type"] = "NK_CD56dim"
    table = compartment_adjusted(scores, obs, _design(obs), COMPARISON, CONTRAST, labels=LABELS)
    rows = table[table["lineage"] == "NK"]
    assert len(rows) == 2  # one per signature
    assert set(rows["evidence"]) == {NOT_TESTABLE} and set(rows["verdict"]) == {NOT_TESTABLE}
    assert rows["note"].str.contains("1 subtype").all()
    assert rows["pvalue_crude"].isna().all()
    # a subtype some donor lacks leaves the standardisation; with one left, not testable
    obs.loc[obs["donor"] == "a5", "cell_type"] = "CD4_memory"
    t = compartment_adjusted(scores, obs, _design(obs), COMPARISON, CONTRAST, labels=LABELS)
    t = t[t["lineage"] == "T"]
    assert set(t["evidence"]) == {NOT_TESTABLE}
    assert (t["subtypes_left_out"] == "CD4_naive").all()
    assert t["note"].str.contains("fewer than 2 subtypes").all()


def test_adapter_writes_checked_tables_and_marks_an_aliased_design(tmp_path):
    import runpy
    from pathlib import Path
    from types import SimpleNamespace

    import anndata as ad

    root = Path(__file__).resolve().parents[2]
    scores, obs = _simulated(within_effect=0.0, n_cells=150)
    obs = obs.assign(study="s")
    atlas = ad.AnnData(obs=obs)
    atlas.write_h5ad(tmp_path / "atlas.h5ad")
    scores.rename_axis("cell").to_csv(tmp_path / "cells.tsv.gz", sep="\t")
    pd.DataFrame(
        {"severity": ["warning"], "topic": ["aliasing:study"], "message": ["aliased"]}
    ).to_csv(tmp_path / "design.tsv", sep="\t", index=False)
    out = {name: str(tmp_path / file) for name, file in (
        ("subsets", "subsets.tsv"), ("adjusted", "adjusted.tsv"), ("figure", "c.png"))}  # fmt: skip
    job = SimpleNamespace(
        input=SimpleNamespace(
            h5ad=str(tmp_path / "atlas.h5ad"),
            scores=str(tmp_path / "cells.tsv.gz"),
            panel=str(root / "config" / "marker_panel.yaml"),
            extra_panel=[],
            design=str(tmp_path / "design.tsv"),
        ),  # fmt: skip
        output=SimpleNamespace(**out),
        params=SimpleNamespace(comparison=COMPARISON, contrast=CONTRAST),
        log=[str(tmp_path / "job.log")],
        wildcards=SimpleNamespace(),
        threads=1,
    )
    runpy.run_path(str(root / "scripts" / "test_compartments.py"), init_globals={"snakemake": job})
    subsets = pd.read_csv(out["subsets"], sep="\t")
    adjusted = pd.read_csv(out["adjusted"], sep="\t", keep_default_na=False)
    assert set(subsets["lineage"]) == {"T"}
    assert set(subsets["evidence"]) == {"confounded"}
    assert adjusted.set_index("signature").loc["regulatory", "verdict"] == EXPLAINED
    assert set(adjusted["evidence"]) == {"confounded"}
    assert adjusted["note"].str.startswith("condition aliased with study").all()
    assert Path(out["figure"]).stat().st_size > 0


# ---- report: findings rows, section, methods ------------------------------------------------
def _result_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both tables of the simulated mix-only study, plus an NK lineage of one subtype."""
    scores, obs = _simulated(within_effect=0.0, n_cells=200)
    obs = obs.copy()
    obs.loc[obs.index[:30], "cell_type"] = "NK_CD56dim"
    design = _design(obs)
    subsets = subset_composition(obs, design, COMPARISON, CONTRAST, labels=LABELS)
    adjusted = compartment_adjusted(scores, obs, design, COMPARISON, CONTRAST, labels=LABELS)
    return subsets, adjusted


def test_findings_rows_carry_the_adjusted_effect_and_the_verdict():
    from cordatlas.report.findings import FINDINGS_COLUMNS, build_findings, is_finding

    subsets, adjusted = _result_tables()
    table = build_findings(composition=None, signatures=None, de_summary=None, de_genes=None,
                           design_findings=None, alpha=0.05, contrast=(CORD, ADULT),
                           subsets=subsets, compartments=adjusted)  # fmt: skip
    assert list(table.columns) == FINDINGS_COLUMNS
    # lineages of one subtype make no claim: no NK rows
    assert set(table["cell_type"]) == {"CD4_naive", "CD4_memory", "T"}
    share = table[table["kind"] == "subset_composition"].set_index("cell_type")
    assert share.at["CD4_naive", "call"] == f"higher in {CORD}"
    assert share.at["CD4_naive", "feature"] == "share_of_T"
    row = table[(table["kind"] == "compartment_adjusted") & (table["feature"] == "regulatory")]
    row = row.iloc[0]
    expected = adjusted[adjusted["lineage"] == "T"].set_index("signature").loc["regulatory"]
    assert row["effect"] == pytest.approx(expected["difference_adjusted"])
    assert row["ci_low"] == pytest.approx(expected["ci_low_adjusted"])
    assert row["padj"] == pytest.approx(expected["padj_adjusted"])
    assert row["call"] == "no difference detected"
    assert row["note"].startswith(EXPLAINED)
    assert f"crude difference {expected['difference_crude']:+.3g} " in row["note"]
    assert (
        f"share explained by the subtype mix {expected['share_explained_by_mix']:.2f}"
        in (row["note"])
    )
    assert row["detail"].endswith("#compartments")
    # the adjusted comparison is not a finding here; the naive share is
    found = table[is_finding(table)]
    assert set(found["kind"]) == {"subset_composition"}
    # an aliased design: every row confounded
    aliased = pd.DataFrame({"severity": ["warning"], "topic": ["aliasing:study"],
                            "message": ["x"]})  # fmt: skip
    table = build_findings(composition=None, signatures=None, de_summary=None, de_genes=None,
                           design_findings=aliased, alpha=0.05, contrast=(CORD, ADULT),
                           subsets=subsets, compartments=adjusted)  # fmt: skip
    assert set(table["evidence"]) == {"confounded"}


def test_findings_from_files_reads_the_compartment_tables(tmp_path):
    from cordatlas.report.findings import findings_from_files

    subsets, adjusted = _result_tables()
    subsets.to_csv(tmp_path / "s.tsv", sep="\t", index=False)
    adjusted.to_csv(tmp_path / "a.tsv", sep="\t", index=False)
    table = findings_from_files(composition=None, signatures=None, de_summary=None, de_all=None,
                                design_findings=None, alpha=0.05, contrast=(CORD, ADULT),
                                subsets=str(tmp_path / "s.tsv"),
                                compartments=str(tmp_path / "a.tsv"))  # fmt: skip
    assert set(table["kind"]) == {"subset_composition", "compartment_adjusted"}
    assert len(table[table["kind"] == "compartment_adjusted"]) == 2  # T x 2 signatures


def test_compartments_section_lists_the_tested_rows_explained_first(tmp_path):
    from cordatlas.report import blocks
    from cordatlas.report.comparison import compartments_section

    subsets, adjusted = _result_tables()
    page = blocks.Page(out_dir=tmp_path, results_dir=tmp_path, alpha=0.05, contrast=(CORD, ADULT))
    section = compartments_section(page, subsets, adjusted, None)
    said = [x["text"] for x in section["blocks"] if x["kind"] in ("text", "absent")]
    assert "1 of 2 lineage x signature differences are explained by the subtype mix." in said
    tables = [x for x in section["blocks"] if x["kind"] == "table"]
    assert [t["id"] for t in tables] == ["t-subset-composition", "t-compartment-adjusted"]
    assert "NK_CD56dim" not in tables[0]["html"]
    html = tables[1]["html"]
    assert html.index("regulatory") < html.index("noise")
    # absent inputs say so
    empty = compartments_section(page, None, None, None)
    said = [x["text"] for x in empty["blocks"] if x["kind"] in ("text", "absent")]
    assert any("subset_composition.tsv" in t for t in said)


def test_methods_name_direct_standardisation_and_its_reference():
    from cordatlas.report.methods import methods_table

    table = methods_table({"comparison": {"min_cells_per_replicate": 10}}).set_index("step")
    row = table.loc["within-lineage compartments"]
    assert "directly standardised" in row["method"]
    assert "comparison.min_cells_per_replicate = 10" in row["parameters"]
    assert "Keiding N, Clayton D 2014" in row["citation"]


def test_donors_without_the_lineage_leave_only_its_comparison():
    # progenitors exist only in some samples (bone marrow, CD34+): a donor with too few cells of
    # the lineage leaves that lineage's comparison instead of making every subtype unusable
    scores, obs = _simulated(within_effect=0.0, n_cells=200)
    obs = obs.copy()
    others = obs.index[obs["donor"] == "a7"][5:]
    obs.loc[others, "cell_type"] = "NK_CD56dim"
    table = compartment_adjusted(scores, obs, _design(obs), COMPARISON, CONTRAST, labels=LABELS)
    row = table[table["lineage"] == "T"].set_index("signature").loc["regulatory"]
    assert row["donors_left_out"] == "a7"
    assert row["subtypes_used"] == "CD4_naive,CD4_memory"
    assert (row["n_condition"], row["n_reference"]) == (4, 3)
    assert row["verdict"] == EXPLAINED


def test_figure_fits_the_report_width_and_says_when_nothing_compares(tmp_path):
    from PIL import Image

    from cordatlas.plotting.base import MAX_WIDTH_PX
    from cordatlas.plotting.compartments import plot_compartments

    subsets, adjusted = _result_tables()
    path = tmp_path / "c.png"
    plot_compartments(subsets, adjusted, path=path, contrast=(CORD, ADULT))
    with Image.open(path) as image:
        assert image.width <= MAX_WIDTH_PX
        assert image.height > 300
    empty = tmp_path / "empty.png"
    plot_compartments(subsets.iloc[0:0], adjusted.iloc[0:0], path=empty, contrast=(CORD, ADULT))
    with Image.open(empty) as image:
        assert image.height < 400  # the message figure
