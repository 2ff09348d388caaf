"""Pseudobulk DE on simulated studies with planted truth: recall, false discoveries, calibration, edge cases."""

from __future__ import annotations

import dataclasses

import anndata as ad
import matplotlib.figure
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp

from cordatlas.compare.cell_level import cell_level_de
from cordatlas.compare.de_summary import DE_COLUMNS, DE_DEFAULTS, de_summary, read_de_table
from cordatlas.compare.deseq2 import pseudobulk_de
from cordatlas.compare.plan import (
    METHOD_CELL_LEVEL,
    METHOD_NOT_TESTED,
    METHOD_PSEUDOBULK,
    PLAN_COLUMNS,
    plan_comparisons,
)
from cordatlas.compare.pseudobulk import aggregate_pseudobulk, cell_type_slug
from cordatlas.demo.simulate import CELL_TYPES, simulate_study
from cordatlas.errors import UserInputError
from cordatlas.params import ComparisonParams, Contrast, default_params
from cordatlas.plotting.de import EXPLORATORY_BANNER, plot_de_heatmap, plot_volcano
from cordatlas.vocabulary import (
    DONOR_LEVEL,
    EVIDENCE_LABELS,
    EXPLORATORY,
    NOT_TESTABLE,
    SAFE_NAME,
)

CONTRAST = Contrast("cord_blood", "adult")
#: The config's defaults: 10 cells per donor, 2 donors per group, 10 counts per gene.
COMPARISON = default_params().comparison
ALPHA = COMPARISON.alpha


def _params(**changes) -> ComparisonParams:
    """The default comparison parameters with some changed (as a config would)."""
    return dataclasses.replace(COMPARISON, **changes)


def _sheet() -> pd.DataFrame:
    """4 cord blood and 4 adult donors, one sample each; sex balanced within each condition."""
    samples = [f"CB{i}" for i in range(1, 5)] + [f"AD{i}" for i in range(1, 5)]
    return pd.DataFrame(
        {
            "sample": samples,
            "donor": samples,
            "condition": ["cord_blood"] * 4 + ["adult"] * 4,
            "sex": ["female", "male", "female", "male", "male", "female", "male", "female"],
        }
    )


def _healthy_cells(condition_effect: bool) -> tuple[ad.AnnData, pd.DataFrame]:
    """Healthy singlets labelled with their true type: raw counts in a layer, log1p X."""
    study = simulate_study(
        _sheet(), n_cells_per_sample=600, n_genes=2000, seed=0, condition_effect=condition_effect
    )
    cells = study.adata[study.adata.obs["artefact"] == "none"].copy()
    cells.obs_names = (cells.obs["sample"].astype(str) + ":" + cells.obs["barcode"]).to_numpy()
    cells.layers["counts"] = cells.X.copy()
    cells.X = sp.csr_matrix(cells.X, dtype=np.float32)
    sc.pp.normalize_total(cells)
    sc.pp.log1p(cells)
    return cells, study.truth_de


def _run_plan(
    pseudobulk: ad.AnnData, cells: ad.AnnData, plan: pd.DataFrame
) -> dict[str, pd.DataFrame]:
    results = {}
    for row in plan.itertuples():
        if row.method == METHOD_PSEUDOBULK:
            results[row.cell_type], _ = pseudobulk_de(
                pseudobulk, COMPARISON, CONTRAST, cell_type=row.cell_type
            )
        elif row.method == METHOD_CELL_LEVEL:
            results[row.cell_type], _ = cell_level_de(
                cells, COMPARISON, CONTRAST, cell_type=row.cell_type
            )
    return results


@pytest.fixture(scope="module")
def study() -> dict:
    cells, truth = _healthy_cells(condition_effect=True)
    pseudobulk = aggregate_pseudobulk(cells, _params(covariates=("sex",)))
    plan = plan_comparisons(pseudobulk.obs, COMPARISON, CONTRAST)
    return {
        "cells": cells,
        "truth": truth,
        "pseudobulk": pseudobulk,
        "plan": plan,
        "results": _run_plan(pseudobulk, cells, plan),
    }


@pytest.fixture(scope="module")
def null_study() -> dict:
    cells, truth = _healthy_cells(condition_effect=False)
    pseudobulk = aggregate_pseudobulk(cells, COMPARISON)
    plan = plan_comparisons(pseudobulk.obs, COMPARISON, CONTRAST)
    return {
        "truth": truth,
        "plan": plan,
        "results": _run_plan(pseudobulk, cells, plan),
    }


def _small(pseudobulk: ad.AnnData, n_genes: int = 300) -> ad.AnnData:
    """The first genes only: keeps DESeq2 fast where a test checks behaviour, not power."""
    return pseudobulk[:, :n_genes].copy()


# ============================================================================================
# Statistical proof on planted truth
# ============================================================================================
def _truth_table(study: dict) -> pd.DataFrame:
    """Per tested cell type: planted genes (|log2FC| >= 1), recovered with the right sign, FDP."""
    truth = study["truth"]
    planted_all = truth[truth["log2FC"].abs() >= 1.0]
    rows = []
    for cell_type, results in study["results"].items():
        planted = planted_all[planted_all["cell_type"] == cell_type].set_index("gene")["log2FC"]
        significant = results[results["padj"] < ALPHA].set_index("gene")["log2FC"]
        recovered = [
            g
            for g in planted.index
            if g in significant and np.sign(significant[g]) == np.sign(planted[g])
        ]
        tested = set(results["gene"])
        rows.append(
            {
                "cell_type": cell_type,
                "method": results["method"].iloc[0] if len(results) else "",
                "planted": len(planted),
                "planted_tested": int(sum(g in tested for g in planted.index)),
                "recovered": len(recovered),
                "significant": len(significant),
                "false": int(sum(g not in planted.index for g in significant.index)),
            }
        )
    table = pd.DataFrame(rows)
    table["recall"] = table["recovered"] / table["planted"].where(table["planted"] > 0)
    table["recall_filtered"] = table["recovered"] / table["planted_tested"].where(
        table["planted_tested"] > 0
    )
    table["fdp"] = table["false"] / table["significant"].where(table["significant"] > 0)
    return table


def test_pseudobulk_recovers_planted_genes_with_few_false_discoveries(study: dict) -> None:
    table = _truth_table(study)
    print("\n" + table.to_string(float_format=lambda v: f"{v:.3f}"))
    donor_level = table[table["method"] == METHOD_PSEUDOBULK]
    # the criterion is only meaningful if most cell types got a donor-level test
    assert len(donor_level) >= 8, table
    recall = donor_level["recovered"].sum() / donor_level["planted"].sum()
    recall_filtered = donor_level["recovered"].sum() / donor_level["planted_tested"].sum()
    fdp = donor_level["false"].sum() / max(donor_level["significant"].sum(), 1)
    print(
        f"pooled over {len(donor_level)} pseudobulk-tested types: recall {recall:.3f} "
        f"(of planted genes passing the filter: {recall_filtered:.3f}), FDP {fdp:.3f}"
    )
    assert recall >= 0.8, table
    assert fdp <= 0.1, table


def test_null_study_is_calibrated(null_study: dict) -> None:
    assert null_study["truth"].empty  # nothing planted: every significant gene is false
    rates = {}
    for cell_type, results in null_study["results"].items():
        if len(results) and results["method"].iloc[0] == METHOD_PSEUDOBULK:
            rates[cell_type] = float((results["padj"] < ALPHA).mean())
    print("\nnull study, share of tested genes with padj < 0.05:", rates)
    assert len(rates) >= 8
    assert max(rates.values()) <= 0.05, rates


def test_results_table_contract(study: dict) -> None:
    for cell_type, results in study["results"].items():
        assert list(results.columns) == DE_COLUMNS
        assert results["evidence"].isin(EVIDENCE_LABELS).all()
        assert (results["cell_type"] == cell_type).all()
        assert results["gene"].is_unique
        p = results["pvalue"].dropna().to_numpy()
        assert np.all(np.diff(p) >= 0), f"{cell_type} not sorted by p-value"
        tested = results["pvalue"].notna()
        assert (results.loc[tested, "padj"] >= results.loc[tested, "pvalue"] * (1 - 1e-12)).all()
        if results["method"].iloc[0] == METHOD_PSEUDOBULK:
            assert set(results["evidence"]) == {DONOR_LEVEL}
            assert (results["lfcSE"].dropna() > 0).all()
            assert (results["n_replicates_condition"] >= 2).all()
            fitted = results["log2FC"].notna()
            assert results.loc[fitted, "log2FC_shrunk"].notna().mean() > 0.99
        else:
            assert set(results["evidence"]) == {EXPLORATORY}
            assert results["log2FC_shrunk"].isna().all()
            assert not results["contamination_flag"].any() and not results["low_power"].any()
            assert (results["contamination_source"] == "").all()
        for flag in ("low_power", "contamination_flag"):
            assert results[flag].dtype == bool, (cell_type, flag)
        assert results["contamination_source"].map(type).eq(str).all()


def test_shrunk_log2fc_is_pydeseq2_apeglm_on_the_same_fit(study: dict) -> None:
    """log2FC stays the Wald test's MLE; log2FC_shrunk is PyDESeq2's lfc_shrink (its default
    per-gene inference, run directly)."""
    from pydeseq2.dds import DeseqDataSet
    from pydeseq2.ds import DeseqStats

    small = _small(study["pseudobulk"])
    results, _ = pseudobulk_de(small, COMPARISON, CONTRAST, cell_type="NK_CD56dim")
    results = results.set_index("gene")
    obs = small.obs
    use = (obs["cell_type"] == "NK_CD56dim") & (
        obs["n_cells"] >= COMPARISON.min_cells_per_replicate
    )
    counts = small[use.to_numpy(), results.index].to_df().astype(np.int64)
    metadata = pd.DataFrame(
        {
            "condition": pd.Categorical(
                obs.loc[use, "condition"], categories=["adult", "cord_blood"]
            )
        },
        index=counts.index,
    )
    dds = DeseqDataSet(counts=counts, metadata=metadata, design="~condition", quiet=True)
    dds.deseq2()
    stats = DeseqStats(dds, contrast=["condition", "cord_blood", "adult"], quiet=True)
    stats.summary()
    mle = stats.results_df["log2FoldChange"].copy()
    stats.lfc_shrink(coeff="condition[T.cord_blood]")
    shrunk = stats.results_df["log2FoldChange"]
    np.testing.assert_allclose(results["log2FC"], mle[results.index], rtol=1e-4, atol=1e-6)
    # the shrunk estimates agree to L-BFGS-B's stopping point on the flat apeGLM posterior
    # (PyDESeq2's per-gene fit stops up to ~1e-3 short of the MAP that BatchedInference
    # reaches; test_batched_inference checks its objective is never worse)
    np.testing.assert_allclose(
        results["log2FC_shrunk"], shrunk[results.index], rtol=1e-2, atol=3e-3
    )
    # apeGLM pulls towards 0 and keeps the sign of the clear effects
    assert (results["log2FC_shrunk"].abs() <= results["log2FC"].abs() + 1e-6).mean() > 0.95
    clear = results[results["padj"] < ALPHA]
    assert len(clear) and (np.sign(clear["log2FC_shrunk"]) == np.sign(clear["log2FC"])).all()


def test_low_power_marks_comparisons_with_few_donors(study: dict) -> None:
    small = _small(study["pseudobulk"])
    default, _ = pseudobulk_de(small, COMPARISON, CONTRAST, cell_type="B_naive")
    assert (default["n_replicates_reference"] == 4).all() and not default["low_power"].any()
    strict, _ = pseudobulk_de(
        small, _params(low_power_max_replicates=4), CONTRAST, cell_type="B_naive"
    )
    assert strict["low_power"].all()
    # the flag changes nothing else
    pd.testing.assert_frame_equal(
        default.drop(columns="low_power"), strict.drop(columns="low_power")
    )


def test_de_tables_round_trip_and_old_tables_read(study: dict, tmp_path) -> None:
    results = study["results"]["NK_CD56dim"].copy()
    results.loc[results.index[:3], "contamination_flag"] = True
    results.loc[results.index[:3], "contamination_source"] = "ambient"
    path = tmp_path / "nk.tsv"
    results.to_csv(path, sep="\t", index=False)
    back = read_de_table(path)
    assert list(back.columns) == DE_COLUMNS
    assert back["contamination_flag"].dtype == bool and back["low_power"].dtype == bool
    pd.testing.assert_series_equal(back["contamination_flag"], results["contamination_flag"])
    pd.testing.assert_series_equal(back["contamination_source"], results["contamination_source"])
    np.testing.assert_allclose(back["log2FC_shrunk"], results["log2FC_shrunk"])
    # a table written before the new columns: read with the defaults, then summarised
    old = tmp_path / "old.tsv"
    results.drop(columns=list(DE_DEFAULTS)).to_csv(old, sep="\t", index=False)
    legacy = read_de_table(old)
    assert legacy["log2FC_shrunk"].isna().all() and not legacy["contamination_flag"].any()
    assert not legacy["low_power"].any() and (legacy["contamination_source"] == "").all()
    summary = de_summary(study["plan"], {"NK_CD56dim": legacy}, alpha=ALPHA)
    assert summary.set_index("cell_type").loc["NK_CD56dim", "n_significant_flagged"] == 0


def test_log2fc_sign_follows_the_contrast(study: dict) -> None:
    # planted: cytotoxicity genes lower in cord blood NK cells, fetal haemoglobin higher
    nk = study["results"]["NK_CD56dim"].set_index("gene")
    assert nk.loc["GZMB", "log2FC"] < -0.7 and nk.loc["GZMB", "padj"] < ALPHA
    swapped, _ = pseudobulk_de(
        _small(study["pseudobulk"], 1000),
        COMPARISON,
        Contrast(CONTRAST.reference, CONTRAST.condition),
        cell_type="NK_CD56dim",
    )
    swapped = swapped.set_index("gene")
    assert swapped.loc["GZMB", "log2FC"] == pytest.approx(-nk.loc["GZMB", "log2FC"], rel=0.05)


def test_pseudobulk_de_is_deterministic(study: dict) -> None:
    small = _small(study["pseudobulk"])
    first, notes_first = pseudobulk_de(small, COMPARISON, CONTRAST, cell_type="B_naive")
    second, notes_second = pseudobulk_de(small, COMPARISON, CONTRAST, cell_type="B_naive")
    pd.testing.assert_frame_equal(first, second)
    assert notes_first == notes_second


def _refit_input(n_per_group: int, covariate: bool) -> tuple[np.ndarray, pd.DataFrame, list]:
    """Negative binomial counts (2n samples x 400 genes), one planted outlier count in gene 3."""
    rng = np.random.default_rng(4)
    n = 2 * n_per_group
    means = rng.lognormal(4.0, 1.2, 400)
    effect = np.where(np.arange(400) < 40, 2.0, 1.0)  # the first 40 genes up in the condition
    mu = np.outer(np.r_[np.ones(n_per_group), np.zeros(n_per_group)], effect - 1) + 1
    mu = mu * means * rng.uniform(0.7, 1.4, (n, 1))
    counts = rng.negative_binomial(1 / 0.1, 1 / (1 + mu * 0.1)).astype(np.int64)
    counts[0, 3] *= 30  # a Cook's outlier: replaced and refitted when a group has >= 7 samples
    design = pd.DataFrame(
        {"condition": ["cord_blood"] * n_per_group + ["adult"] * n_per_group},
        index=[f"s{i}" for i in range(n)],
    )
    used = []
    if covariate:
        design["sex"] = np.tile(["female", "male"], n_per_group)
        used = ["sex"]
    return counts, design, used


@pytest.mark.parametrize(("n_per_group", "covariate"), [(4, True), (7, False)])
def test_target_only_refit_gives_the_full_pipelines_pvalues(n_per_group, covariate) -> None:
    """Leave-one-out's refit runs the per-gene steps on the targets only: same p-values."""
    from cordatlas.compare.deseq2 import _refit_pvalues, _run_deseq2

    counts, design, used = _refit_input(n_per_group, covariate)
    genes = pd.Index([f"g{i}" for i in range(counts.shape[1])])
    targets = genes[[0, 3, 5, 17, 39, 120, 399]]  # planted, the outlier gene, null genes
    common = dict(genes=genes, condition_key="condition", covariates=used, numeric=[],
                  contrast=CONTRAST.as_tuple(), n_cpus=1)  # fmt: skip
    full, _ = _run_deseq2(counts, design, notes=[], cell_type="x", shrink=False, **common)
    fast = _refit_pvalues(counts, design, targets=targets, **common)
    assert list(fast.index) == list(targets)
    assert (fast.iloc[:5] < 0.05).sum() >= 3  # the planted genes are found: a real test
    np.testing.assert_allclose(fast.to_numpy(), full.loc[targets, "pvalue"].to_numpy(), rtol=1e-9)


def test_cell_types_in_parallel_processes_give_the_serial_results(study: dict) -> None:
    from cordatlas.compare.deseq2 import leave_one_out_de, pseudobulk_de_each

    small = _small(study["pseudobulk"], n_genes=200)
    cell_types = ["B_naive", "CD14_monocyte", "NK_CD56dim"]
    pre = {"CD14_monocyte": {str(small.var_names[0]), str(small.var_names[1])}}
    parallel = list(
        pseudobulk_de_each(
            small, COMPARISON, CONTRAST, cell_types=cell_types, prespecified=pre, processes=2
        )
    )
    assert [ct for ct, _, _ in parallel] == cell_types
    for cell_type, results, notes in parallel:
        alone, alone_notes = pseudobulk_de(
            small, COMPARISON, CONTRAST, cell_type=cell_type, prespecified=pre.get(cell_type, ())
        )
        alone, loo_notes = leave_one_out_de(small, alone, COMPARISON, CONTRAST, cell_type=cell_type)
        pd.testing.assert_frame_equal(results, alone)
        assert notes == alone_notes + loo_notes
    assert parallel[1][1]["family"].eq("prespecified").sum() == 2


# ============================================================================================
# Aggregation
# ============================================================================================
def test_aggregation_sums_raw_counts_exactly(study: dict) -> None:
    cells, pseudobulk = study["cells"], study["pseudobulk"]
    counts = cells.layers["counts"].toarray()
    types = cells.obs["cell_type"].astype(str).to_numpy()
    donors = cells.obs["donor"].astype(str).to_numpy()
    expected_pairs = set(zip(types, donors, strict=True))
    assert pseudobulk.n_obs == len(expected_pairs)
    assert pseudobulk.X.dtype.kind == "i"
    assert list(pseudobulk.var_names) == list(cells.var_names)
    matrix = pseudobulk.X.toarray()
    for i, (cell_type, donor) in enumerate(
        zip(
            pseudobulk.obs["cell_type"].astype(str),
            pseudobulk.obs["donor"].astype(str),
            strict=True,
        )
    ):
        mask = (types == cell_type) & (donors == donor)
        assert pseudobulk.obs_names[i] == f"{cell_type}__{donor}"
        assert pseudobulk.obs["n_cells"].iloc[i] == mask.sum()
        np.testing.assert_array_equal(matrix[i], counts[mask].sum(axis=0))
        assert pseudobulk.obs["condition"].iloc[i] == cells.obs["condition"][mask].iloc[0]
        assert pseudobulk.obs["sex"].iloc[i] == cells.obs["sex"][mask].iloc[0]
    assert pseudobulk.obs["n_cells"].sum() == cells.n_obs


def _toy_cells() -> ad.AnnData:
    """Two donors; donor d1 has two samples (summed together); three genes."""
    counts = np.array(
        [[1, 0, 2], [0, 3, 1], [4, 4, 0], [2, 0, 0], [0, 1, 5], [7, 0, 1]], dtype=np.float32
    )
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical(
                ["T", "T", "B", "T", "B", "T"], categories=["T", "B", "never_seen"]
            ),
            "donor": ["d1", "d1", "d1", "d2", "d2", "d1"],
            "sample": ["s1", "s2", "s1", "s3", "s3", "s2"],
            "condition": ["cord_blood", "cord_blood", "cord_blood", "adult", "adult", "cord_blood"],
            "sex": ["f", "f", "f", "m", "m", "f"],
        },
        index=[f"c{i}" for i in range(6)],
    )
    adata = ad.AnnData(X=np.zeros_like(counts), obs=obs)
    adata.var_names = ["g1", "g2", "g3"]
    adata.layers["counts"] = sp.csr_matrix(counts)
    return adata


def test_aggregation_merges_samples_of_a_donor_and_skips_empty_categories() -> None:
    pseudobulk = aggregate_pseudobulk(_toy_cells(), _params(covariates=("sex",)))
    assert list(pseudobulk.obs_names) == ["T__d1", "T__d2", "B__d1", "B__d2"]
    np.testing.assert_array_equal(
        pseudobulk.X.toarray(), [[8, 3, 4], [2, 0, 0], [4, 4, 0], [0, 1, 5]]
    )
    assert list(pseudobulk.obs["n_cells"]) == [3, 1, 1, 1]
    assert "never_seen" not in set(pseudobulk.obs["cell_type"].astype(str))
    assert list(pseudobulk.obs["sex"]) == ["f", "m", "f", "m"]


def test_aggregation_of_dense_counts_matches_sparse() -> None:
    sparse_input = _toy_cells()
    dense_input = sparse_input.copy()
    dense_input.layers["counts"] = sparse_input.layers["counts"].toarray()
    from_sparse = aggregate_pseudobulk(sparse_input, COMPARISON)
    from_dense = aggregate_pseudobulk(dense_input, COMPARISON)
    np.testing.assert_array_equal(from_sparse.X.toarray(), from_dense.X)


def test_aggregation_in_chunks_from_disk_equals_the_whole_matrix_sum(tmp_path, monkeypatch) -> None:
    """aggregate_pseudobulk reads the counts a chunk of cells at a time, also from the file."""
    from cordatlas.io.stage import open_layer, write_stage

    rng = np.random.default_rng(3)
    cells = _toy_cells()
    cells = ad.concat([cells] * 13, index_unique="-")  # 78 cells, donors and types interleaved
    cells.layers["counts"] = sp.csr_matrix(rng.poisson(2.0, size=cells.shape).astype(np.float32))
    whole = aggregate_pseudobulk(cells, COMPARISON)
    pair = cells.obs["cell_type"].astype(str) + "__" + cells.obs["donor"].astype(str)
    by_pair = pd.DataFrame(cells.layers["counts"].toarray()).groupby(pair.to_numpy()).sum()
    expected = by_pair.loc[whole.obs_names].to_numpy()
    np.testing.assert_array_equal(whole.X.toarray(), expected)
    monkeypatch.setattr("cordatlas.io.stage.CHUNK_CELLS", 7)  # eleven chunks, a ragged last
    in_memory = aggregate_pseudobulk(cells, COMPARISON)
    write_stage(cells, tmp_path / "cells.h5ad")
    with open_layer(tmp_path / "cells.h5ad", "counts") as on_disk:
        from_disk = aggregate_pseudobulk(on_disk, COMPARISON, counts_layer=None)
    for chunked in (in_memory, from_disk):
        assert sp.issparse(chunked.X) and chunked.X.dtype == np.int64
        np.testing.assert_array_equal(chunked.X.toarray(), expected)
        assert chunked.obs.equals(whole.obs)
    # a value that is not a count, in a chunk past the first, is still refused
    layer = cells.layers["counts"].toarray()
    layer[60, 1] = 0.5
    cells.layers["counts"] = sp.csr_matrix(layer)
    with pytest.raises(UserInputError, match="not raw counts"):
        aggregate_pseudobulk(cells, COMPARISON)


@pytest.mark.parametrize("bad_value", [0.5, -1.0, np.nan])
def test_aggregation_refuses_non_count_values(bad_value: float) -> None:
    adata = _toy_cells()
    layer = adata.layers["counts"].toarray()
    layer[1, 1] = bad_value
    adata.layers["counts"] = sp.csr_matrix(layer)
    with pytest.raises(UserInputError, match="not raw counts"):
        aggregate_pseudobulk(adata, COMPARISON)


def test_aggregation_refuses_normalised_data_from_a_study(study: dict) -> None:
    cells = study["cells"][:200].copy()
    with pytest.raises(UserInputError, match="not raw counts"):
        aggregate_pseudobulk(cells, COMPARISON, counts_layer=None)  # X is log-normalised


def test_aggregation_reports_missing_layer_and_labels() -> None:
    adata = _toy_cells()
    with pytest.raises(UserInputError, match="layer 'raw'"):
        aggregate_pseudobulk(adata, COMPARISON, counts_layer="raw")
    adata.obs["cell_type"] = adata.obs["cell_type"].astype(object)
    adata.obs.loc["c2", "cell_type"] = np.nan
    with pytest.raises(UserInputError, match="'c2'.*unassigned"):
        aggregate_pseudobulk(adata, COMPARISON)


def test_aggregation_refuses_covariate_varying_within_donor() -> None:
    adata = _toy_cells()
    adata.obs.loc["c1", "sex"] = "m"  # donor d1 is f in its other cells
    with pytest.raises(UserInputError, match="donor 'd1'.*'sex'"):
        aggregate_pseudobulk(adata, _params(covariates=("sex",)))


# ============================================================================================
# Plan
# ============================================================================================
def _obs(rows: list[tuple[str, str, str, int]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["cell_type", "donor", "condition", "n_cells"])
    frame.index = frame["cell_type"] + "__" + frame["donor"]
    return frame


def test_plan_routes_each_cell_type() -> None:
    rows = []
    for donor in ("c1", "c2", "c3"):
        rows.append(("both", donor, "cord_blood", 30))
        rows.append(("unassigned", donor, "cord_blood", 30))
    for donor in ("a1", "a2", "a3"):
        rows.append(("both", donor, "adult", 25))
        rows.append(("adult_only", donor, "adult", 40))
        rows.append(("unassigned", donor, "adult", 30))
    rows += [
        ("one_each", "c1", "cord_blood", 50),
        ("one_each", "a1", "adult", 60),
        ("few_cord", "c1", "cord_blood", 5),
        ("few_cord", "a1", "adult", 30),
        ("few_cord", "a2", "adult", 30),
        # three adult donors but only one with >= 10 cells
        ("thin_adult", "c1", "cord_blood", 20),
        ("thin_adult", "c2", "cord_blood", 20),
        ("thin_adult", "a1", "adult", 15),
        ("thin_adult", "a2", "adult", 4),
        ("thin_adult", "a3", "adult", 3),
    ]
    plan = plan_comparisons(_obs(rows), COMPARISON, CONTRAST).set_index("cell_type")
    assert list(plan.columns) == PLAN_COLUMNS[1:]
    assert plan.loc["both", "method"] == METHOD_PSEUDOBULK
    assert (
        plan.loc["both", "n_replicates_condition"],
        plan.loc["both", "n_replicates_reference"],
    ) == (3, 3)
    assert (plan.loc["both", "n_cells_condition"], plan.loc["both", "n_cells_reference"]) == (
        90,
        75,
    )
    assert plan.loc["adult_only", "method"] == METHOD_NOT_TESTED
    assert plan.loc["adult_only", "note"] == "absent in cord_blood"
    assert plan.loc["one_each", "method"] == METHOD_CELL_LEVEL
    assert "no biological replication" in plan.loc["one_each", "note"]
    assert plan.loc["few_cord", "method"] == METHOD_NOT_TESTED
    assert "5 cells in cord_blood" in plan.loc["few_cord", "note"]
    assert plan.loc["thin_adult", "method"] == METHOD_CELL_LEVEL
    assert plan.loc["thin_adult", "n_replicates_reference"] == 1
    assert plan.loc["thin_adult", "n_cells_reference"] == 22
    assert plan.loc["unassigned", "method"] == METHOD_NOT_TESTED
    assert plan.loc["unassigned", "note"] == "excluded by config"
    assert plan.loc["both", "evidence"] == DONOR_LEVEL
    assert plan.loc["one_each", "evidence"] == EXPLORATORY
    assert (plan.loc[plan["method"] == METHOD_NOT_TESTED, "evidence"] == NOT_TESTABLE).all()
    assert set(plan["evidence"]) <= set(EVIDENCE_LABELS)

    # the DE rules' files, listed from the plan (one folder per method, no untested cell type)
    from cordatlas.compare.plan import planned_figures, planned_tables

    full = plan.reset_index()
    folders = {METHOD_PSEUDOBULK: "pb", METHOD_CELL_LEVEL: "cl"}
    assert planned_tables(full, folders) == [
        "pb/both.tsv",
        *(f"cl/{s}.tsv" for s in full.loc[full["method"] == METHOD_CELL_LEVEL, "slug"]),
    ]
    assert sorted(planned_tables(full, folders)) == sorted(
        {"pb/both.tsv", "cl/one_each.tsv", "cl/thin_adult.tsv"}
    )
    assert sorted(planned_figures(full, folders)) == [
        "cl/figures/one_each_volcano.png",
        "cl/figures/thin_adult_volcano.png",
        "pb/figures/both_heatmap.png",
        "pb/figures/both_volcano.png",
    ]
    only_pseudobulk = full[full["method"] == METHOD_PSEUDOBULK]
    assert planned_tables(only_pseudobulk, {METHOD_PSEUDOBULK: "pb"}) == ["pb/both.tsv"]


def test_plan_covers_every_simulated_cell_type(study: dict) -> None:
    plan = study["plan"]
    assert sorted(plan["cell_type"]) == sorted(CELL_TYPES)
    assert set(plan["method"]) <= {METHOD_PSEUDOBULK, METHOD_CELL_LEVEL, METHOD_NOT_TESTED}
    assert set(plan["evidence"]) <= set(EVIDENCE_LABELS)
    assert (plan["slug"] == plan["cell_type"]).all()  # simulator names are already safe


def test_slugs_are_safe_and_distinct() -> None:
    names = ["CD4+ T cells", "CD4- T cells", "CD4_T_cells", "γδ T", "B naive"]
    slugs = [cell_type_slug(n) for n in names]
    assert all(SAFE_NAME.match(s) for s in slugs)
    assert len(set(slugs)) == len(slugs)
    assert cell_type_slug("CD14_monocyte") == "CD14_monocyte"


def test_plan_refuses_bad_configuration() -> None:
    obs = _obs([("T", "c1", "cord_blood", 20), ("T", "a1", "adult", 20)])
    with pytest.raises(UserInputError, match="'cord_bood'.*config's contrast"):
        plan_comparisons(obs, COMPARISON, Contrast("cord_bood", "adult"))
    with pytest.raises(UserInputError, match="min_replicates"):
        plan_comparisons(obs, _params(min_replicates_per_group=1), CONTRAST)
    with pytest.raises(UserInputError, match="two different conditions"):
        plan_comparisons(obs, COMPARISON, Contrast("adult", "adult"))


# ============================================================================================
# Covariates, refusals, empty cases
# ============================================================================================
def test_covariate_aliased_with_condition_is_dropped_with_a_note(study: dict) -> None:
    small = _small(study["pseudobulk"])
    small.obs["site"] = np.where(small.obs["condition"] == "cord_blood", "maternity", "blood_bank")
    results, notes = pseudobulk_de(
        small, _params(covariates=("site", "sex")), CONTRAST, cell_type="B_naive"
    )
    assert any("'site'" in n and "aliased with condition" in n for n in notes), notes
    assert set(results["covariates"]) == {"sex"}  # balanced sex is kept
    assert any("~sex + condition" in n for n in notes), notes


def test_covariate_errors_name_the_field(study: dict) -> None:
    small = _small(study["pseudobulk"])
    with pytest.raises(UserInputError, match="'age'"):
        pseudobulk_de(small, _params(covariates=("age",)), CONTRAST, cell_type="B_naive")
    with pytest.raises(UserInputError, match="condition itself"):
        pseudobulk_de(small, _params(covariates=("condition",)), CONTRAST, cell_type="B_naive")


def test_pseudobulk_de_refuses_unreplicated_or_unknown_cell_types(study: dict) -> None:
    small = _small(study["pseudobulk"])
    unreplicated = study["plan"].query("method == @METHOD_CELL_LEVEL")["cell_type"].iloc[0]
    with pytest.raises(UserInputError, match=f"cell type '{unreplicated}'.*>= 2 per group"):
        pseudobulk_de(small, COMPARISON, CONTRAST, cell_type=unreplicated)
    with pytest.raises(UserInputError, match="'plasma'"):
        pseudobulk_de(small, COMPARISON, CONTRAST, cell_type="plasma")


def test_no_gene_passing_the_filter_gives_an_empty_table(study: dict) -> None:
    results, notes = pseudobulk_de(
        _small(study["pseudobulk"]),
        _params(min_gene_counts=10**9),
        CONTRAST,
        cell_type="B_naive",
    )
    assert results.empty and list(results.columns) == DE_COLUMNS
    assert any("0 of 300 genes tested" in n for n in notes), notes
    summary = de_summary(study["plan"], {"B_naive": results}, alpha=ALPHA)
    row = summary.set_index("cell_type").loc["B_naive"]
    assert (row["n_genes_tested"], row["n_significant"]) == (0, 0)


# ============================================================================================
# Exploratory cell-level fallback
# ============================================================================================
def test_cell_level_fallback_is_marked_exploratory(study: dict) -> None:
    cell_level = study["plan"].query("method == @METHOD_CELL_LEVEL")
    assert not cell_level.empty
    cell_type = cell_level["cell_type"].iloc[0]
    results, notes = cell_level_de(study["cells"], COMPARISON, CONTRAST, cell_type=cell_type)
    assert len(results) > 1000
    assert (results["method"] == METHOD_CELL_LEVEL).all()
    assert (results["evidence"] == EXPLORATORY).all()
    assert results["lfcSE"].isna().all()
    assert "not independent replicates" in notes[0] and "not donor-level evidence" in notes[0]
    assert (results["base_mean"] >= 0).all()
    # the fallback still points the right way on a strong planted effect of this type
    truth = study["truth"]
    strongest = truth[truth["cell_type"] == cell_type].sort_values(
        "log2FC", key=np.abs, ascending=False
    )
    gene, lfc = strongest["gene"].iloc[0], strongest["log2FC"].iloc[0]
    assert np.sign(results.set_index("gene").loc[gene, "log2FC"]) == np.sign(lfc)


def test_cell_level_fallback_refuses_raw_counts_and_too_few_cells(study: dict) -> None:
    cells = study["cells"]
    raw = ad.AnnData(X=cells.layers["counts"].copy(), obs=cells.obs.copy(), var=cells.var.copy())
    with pytest.raises(UserInputError, match="raw counts"):
        cell_level_de(raw, COMPARISON, CONTRAST, cell_type="B_naive")
    with pytest.raises(UserInputError, match="'B_naive'.*>= 100000"):
        cell_level_de(cells, _params(min_cells_per_replicate=100000), CONTRAST, cell_type="B_naive")


# ============================================================================================
# Summary
# ============================================================================================
def test_summary_counts_significant_genes(study: dict) -> None:
    summary = de_summary(study["plan"], study["results"], alpha=ALPHA).set_index("cell_type")
    assert len(summary) == len(study["plan"])
    for cell_type, results in study["results"].items():
        significant = results[results["padj"] < ALPHA]
        assert summary.loc[cell_type, "n_genes_tested"] == results["pvalue"].notna().sum()
        assert summary.loc[cell_type, "n_significant"] == len(significant)
        assert summary.loc[cell_type, "n_up"] == (significant["log2FC"] > 0).sum()
        assert summary.loc[cell_type, "n_down"] == (significant["log2FC"] < 0).sum()
        assert (
            summary.loc[cell_type, "n_significant_flagged"]
            == significant["contamination_flag"].sum()
        )
    untested = summary[summary["method"] == METHOD_NOT_TESTED]
    assert (untested["n_genes_tested"] == 0).all()
    # one label per row: the plan's, never a joined set
    assert summary["evidence"].isin(EVIDENCE_LABELS).all()
    assert (summary["evidence"] == study["plan"].set_index("cell_type")["evidence"]).all()
    assert (untested["evidence"] == NOT_TESTABLE).all()
    relabelled = study["results"]["B_naive"].assign(evidence=EXPLORATORY)
    with pytest.raises(UserInputError, match="'B_naive'.*plan gives it 'donor_level'"):
        de_summary(study["plan"], {"B_naive": relabelled}, alpha=ALPHA)
    with pytest.raises(UserInputError, match="'plasma'"):
        de_summary(study["plan"], {"plasma": study["results"]["B_naive"]}, alpha=ALPHA)


# ============================================================================================
# Figures
# ============================================================================================
@pytest.fixture
def titles(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every axes title of every figure saved while the test runs."""
    seen: list[str] = []
    original = matplotlib.figure.Figure.savefig

    def recording(self, *args, **kwargs):
        seen.extend(ax.get_title() for ax in self.axes)
        seen.extend(t.get_text() for ax in self.axes for t in ax.texts)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", recording)
    return seen


def _is_image(path) -> bool:
    return path.is_file() and plt.imread(path).ndim == 3


def test_figures_for_donor_level_results(study: dict, tmp_path, titles: list[str]) -> None:
    results = study["results"]["NK_CD56dim"]
    plot_volcano(results, path=tmp_path / "volcano.png", title="NK_CD56dim: cord_blood vs adult")
    plot_de_heatmap(
        study["pseudobulk"],
        results,
        cell_type="NK_CD56dim",
        path=tmp_path / "heatmap.png",
        contrast=CONTRAST.as_tuple(),
        min_cells=10,
    )
    assert _is_image(tmp_path / "volcano.png") and _is_image(tmp_path / "heatmap.png")
    assert not any(EXPLORATORY_BANNER in t for t in titles)
    assert any("GZMB" == t for t in titles)  # a planted gene is labelled


def test_figures_for_exploratory_and_empty_results(
    study: dict, tmp_path, titles: list[str]
) -> None:
    cell_type = study["plan"].query("method == @METHOD_CELL_LEVEL")["cell_type"].iloc[0]
    results = study["results"][cell_type]
    plot_volcano(results, path=tmp_path / "exploratory.png", title=cell_type)
    assert any(t.startswith(EXPLORATORY_BANNER) for t in titles)
    empty = results.iloc[:0]
    plot_volcano(empty, path=tmp_path / "empty_volcano.png", title="empty")
    plot_de_heatmap(
        study["pseudobulk"], empty, cell_type=cell_type, path=tmp_path / "empty_heatmap.png"
    )
    null = results.assign(padj=1.0)
    plot_volcano(null, path=tmp_path / "null_volcano.png", title="null")
    for name in ("exploratory", "empty_volcano", "empty_heatmap", "null_volcano"):
        assert _is_image(tmp_path / f"{name}.png"), name
    assert titles.count("no genes tested") == 2
    assert "nothing significant" in titles
