"""Rank-based gene-set enrichment: shifted sets found, random sets calibrated, size limits, GMT reading."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cordatlas.compare.enrichment import (
    ENRICHMENT_COLUMNS,
    METHOD,
    rank_enrichment,
    rank_enrichment_by_cell_type,
)
from cordatlas.errors import UserInputError
from cordatlas.genesets.library import gene_lists, load_gene_sets
from cordatlas.params import EnrichmentParams
from cordatlas.plotting.enrichment import plot_enrichment
from cordatlas.vocabulary import EVIDENCE_LABELS, EXPLORATORY

N_GENES = 2000
#: Set-size limits of these tests (the config's default minimum is 3).
LIMITS = EnrichmentParams(min_set_size=5, max_set_size=500)


def _de(seed: int = 0, *, shifts: dict[str, tuple[list[str], float]] | None = None) -> pd.DataFrame:
    """One cell type's DE table of N(0, 1) Wald statistics, chosen genes shifted by `shifts`."""
    rng = np.random.default_rng(seed)
    genes = [f"G{i:04d}" for i in range(N_GENES)]
    stat = rng.normal(0.0, 1.0, N_GENES)
    index = {g: i for i, g in enumerate(genes)}
    for members, shift in (shifts or {}).values():
        stat[[index[g] for g in members]] += shift
    return pd.DataFrame(
        {
            "cell_type": "CD4_naive",
            "gene": genes,
            "stat": stat,
            "log2FC": stat / 4,
            "evidence": "donor_level",
        }
    )


UP = [f"G{i:04d}" for i in range(0, 30)]
DOWN = [f"G{i:04d}" for i in range(100, 130)]


def test_shifted_sets_found_in_the_right_direction():
    de = _de(shifts={"up": (UP, 1.0), "down": (DOWN, -1.0)})
    null = [f"G{i:04d}" for i in range(500, 540)]
    result = rank_enrichment(de, {"up": UP, "down": DOWN, "null": null}, LIMITS, n_leading=5)
    assert list(result.columns) == ENRICHMENT_COLUMNS
    assert result["evidence"].isin(EVIDENCE_LABELS).all()
    by_set = result.set_index("gene_set")
    assert by_set.loc["up", "direction"] == "up" and by_set.loc["up", "pvalue"] < 1e-4
    assert by_set.loc["down", "direction"] == "down" and by_set.loc["down", "pvalue"] < 1e-4
    assert by_set.loc["up", "auc"] > 0.65 and by_set.loc["down", "auc"] < 0.35
    assert by_set.loc["null", "pvalue"] > 0.05
    assert (result["n_genes"] == [30, 30, 40]).all() and (result["n_missing"] == 0).all()
    assert (result["cell_type"] == "CD4_naive").all()
    assert (result["evidence"] == "donor_level").all() and (result["method"] == METHOD).all()
    assert (result["note"] == "").all()
    # leading genes: the set's most extreme statistics in its direction, most extreme first
    stat = de.set_index("gene")["stat"]
    assert by_set.loc["up", "leading_genes"].split(",") == list(
        stat[UP].sort_values(ascending=False).index[:5]
    )
    assert by_set.loc["down", "leading_genes"].split(",") == list(
        stat[DOWN].sort_values().index[:5]
    )


def test_auc_is_the_pairwise_probability_and_padj_is_bh():
    de = _de(seed=1, shifts={"up": (UP, 0.5)})
    sets = {"up": UP, "down": DOWN, "small": UP[:3]}
    result = rank_enrichment(de, sets, LIMITS)
    stat = de.set_index("gene")["stat"]
    inside = stat[UP].to_numpy()
    outside = stat.drop(UP).to_numpy()
    pairwise = (inside[:, None] > outside[None, :]).mean()
    np.testing.assert_allclose(result.set_index("gene_set").loc["up", "auc"], pairwise)
    tested = result["pvalue"].notna()
    assert tested.tolist() == [True, True, False]
    p = np.sort(result.loc[tested, "pvalue"].to_numpy())
    expected = np.minimum(np.minimum.accumulate((p * 2 / np.array([1, 2]))[::-1])[::-1], 1)
    np.testing.assert_allclose(np.sort(result.loc[tested, "padj"].to_numpy()), expected)


def test_random_sets_are_roughly_uniform():
    """200 random sets of 25 genes in a null ranking: few small p-values, no direction bias."""
    de = _de(seed=2)
    rng = np.random.default_rng(7)
    genes = de["gene"].to_numpy()
    sets = {f"random_{k}": list(rng.choice(genes, 25, replace=False)) for k in range(200)}
    result = rank_enrichment(de, sets, LIMITS)
    p = result["pvalue"].to_numpy()
    assert np.isfinite(p).all()
    assert (p < 0.05).mean() < 0.10
    assert 0.4 < p.mean() < 0.6
    assert 0.35 < (result["direction"] == "up").mean() < 0.65
    assert (result["padj"] < 0.05).sum() <= 2


def test_size_limits_missing_genes_and_case_sensitivity():
    de = _de(seed=3)
    de.loc[de["gene"] == "G0003", "stat"] = np.nan  # untested gene: not ranked
    sets = {
        "small": ["G0000", "G0001", "G0002", "G0003", "NOT_A_GENE"],
        "lowercase": [g.lower() for g in UP],
        "large": [f"G{i:04d}" for i in range(600)],
        "fits": UP + ["NOT_A_GENE", "G0000"],
    }
    result = rank_enrichment(de, sets, LIMITS).set_index("gene_set")
    assert result.loc["small", "n_genes"] == 3 and result.loc["small", "n_missing"] == 2
    assert "fewer than min_size=5" in result.loc["small", "note"]
    assert result.loc["lowercase", "n_genes"] == 0 and result.loc["lowercase", "n_missing"] == 30
    assert "more than max_size=500" in result.loc["large", "note"]
    untested = result.loc[["small", "lowercase", "large"]]
    assert untested[["auc", "pvalue", "padj"]].isna().all().all()
    assert (untested["direction"] == "").all() and (untested["leading_genes"] == "").all()
    # 31 distinct symbols (G0000 listed twice): G0003 (NaN) and NOT_A_GENE are not ranked
    assert result.loc["fits", "n_genes"] == 29 and result.loc["fits", "n_missing"] == 2
    assert result.loc["fits", "note"] == "" and np.isfinite(result.loc["fits", "pvalue"])


def test_exploratory_evidence_is_carried_and_empty_sets_give_empty_table():
    de = _de(seed=4).assign(evidence=EXPLORATORY)
    result = rank_enrichment(de, {"up": UP, "tiny": UP[:2]}, LIMITS)
    assert (result["evidence"] == EXPLORATORY).all()  # untested sets too: one label per table
    assert result["evidence"].isin(EVIDENCE_LABELS).all()
    empty = rank_enrichment(de, {}, LIMITS)
    assert empty.empty and list(empty.columns) == ENRICHMENT_COLUMNS


def test_evidence_must_be_one_label_of_the_vocabulary():
    de = _de(seed=4)
    mixed = de.assign(evidence=np.where(np.arange(len(de)) < 10, EXPLORATORY, "donor_level"))
    with pytest.raises(UserInputError, match="mixes evidence labels"):
        rank_enrichment(mixed, {"up": UP}, LIMITS)
    with pytest.raises(ValueError, match="not in the vocabulary"):
        rank_enrichment(de.assign(evidence="donor_level;exploratory"), {"up": UP}, LIMITS)
    with pytest.raises(UserInputError, match="evidence"):
        rank_enrichment(de.drop(columns="evidence"), {"up": UP}, LIMITS)


def test_each_cell_type_ranked_on_its_own():
    """Set 'up' shifted only in Treg: found there, not in CD4_naive; BH within each type."""
    de = pd.concat(
        [_de(seed=5), _de(seed=6, shifts={"up": (UP, 1.0)}).assign(cell_type="Treg")],
        ignore_index=True,
    )
    sets = {"up": UP, "down": DOWN}
    result = rank_enrichment_by_cell_type(de, sets, LIMITS)
    assert result["evidence"].isin(EVIDENCE_LABELS).all()
    assert result["cell_type"].tolist() == ["CD4_naive", "CD4_naive", "Treg", "Treg"]
    by_key = result.set_index(["cell_type", "gene_set"])
    assert by_key.loc[("Treg", "up"), "padj"] < 1e-3
    assert by_key.loc[("CD4_naive", "up"), "pvalue"] > 0.05
    alone = rank_enrichment(de[de["cell_type"] == "Treg"], sets, LIMITS)
    np.testing.assert_allclose(result.loc[result["cell_type"] == "Treg", "padj"], alone["padj"])
    empty = rank_enrichment_by_cell_type(de.iloc[0:0], sets, LIMITS)
    assert empty.empty and list(empty.columns) == ENRICHMENT_COLUMNS


def test_bad_de_tables_raise():
    de = _de()
    with pytest.raises(UserInputError, match="wald"):
        rank_enrichment(de, {"up": UP}, LIMITS, rank_by="wald")
    two = pd.concat([de, de.assign(cell_type="Treg")])
    with pytest.raises(UserInputError, match="several cell types"):
        rank_enrichment(two, {"up": UP}, LIMITS)
    with pytest.raises(UserInputError, match="'G0000' appears more than once"):
        rank_enrichment(pd.concat([de, de.iloc[:1]]), {"up": UP}, LIMITS)
    with pytest.raises(UserInputError, match="min_size"):
        rank_enrichment(de, {"up": UP}, EnrichmentParams(min_set_size=10, max_set_size=5))


def test_gmt_sets_reach_the_enrichment(tmp_path):
    """User GMT files are read once, by the signature library loader, for scoring and enrichment."""

    def read_gmt(path):
        return gene_lists(load_gene_sets(path))

    path = tmp_path / "sets.gmt"
    path.write_text(
        "HALLMARK_A\thttp://example.org\tCD3E\tCD3D\tCD3E\t\n\nHALLMARK_B\tna\tGZMB\tPRF1\tNKG7\n"
    )
    assert read_gmt(path) == {
        "HALLMARK_A": ["CD3E", "CD3D"],
        "HALLMARK_B": ["GZMB", "PRF1", "NKG7"],
    }

    bad = tmp_path / "bad.gmt"
    bad.write_text("HALLMARK_A\tdesc\tCD3E\nHALLMARK_B desc GZMB PRF1\n")
    with pytest.raises(UserInputError, match=r"bad\.gmt', line 2"):
        read_gmt(bad)
    no_genes = tmp_path / "no_genes.gmt"
    no_genes.write_text("HALLMARK_A\tdesc\t\t\n")
    with pytest.raises(UserInputError, match="line 1"):
        read_gmt(no_genes)
    twice = tmp_path / "twice.gmt"
    twice.write_text("S\td\tA\nT\td\tB\nS\td\tC\n")
    with pytest.raises(UserInputError, match="line 3: set 'S' appears twice"):
        read_gmt(twice)
    with pytest.raises(UserInputError, match="not found"):
        read_gmt(tmp_path / "missing.gmt")
    empty = tmp_path / "empty.gmt"
    empty.write_text("\n")
    with pytest.raises(UserInputError, match="holds no gene set"):
        read_gmt(empty)


def test_enrichment_figure_normal_and_empty(tmp_path):
    sets = {"up": UP, "down": DOWN, "null": [f"G{i:04d}" for i in range(500, 540)], "tiny": UP[:2]}
    tables = [
        rank_enrichment(
            _de(seed, shifts={"up": (UP, 1.0), "down": (DOWN, -1.0)}).assign(cell_type=name),
            sets,
            LIMITS,
        )
        for seed, name in enumerate(["CD4_naive", "CD8_naive", "B_naive"])
    ]
    path = tmp_path / "enrichment.png"
    plot_enrichment(pd.concat(tables, ignore_index=True), path=path)
    assert path.stat().st_size > 10_000
    for name, frame in {
        "empty": pd.DataFrame(columns=ENRICHMENT_COLUMNS),
        "untested": tables[0][tables[0]["gene_set"] == "tiny"],
    }.items():
        target = tmp_path / f"{name}.png"
        plot_enrichment(frame, path=target)
        assert target.stat().st_size > 1_000
