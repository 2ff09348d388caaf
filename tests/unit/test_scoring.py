"""Gene-set scores: the batched scorer gives scanpy's score_genes, set by set."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scanpy as sc
import scipy.sparse as sp

from cordatlas.errors import UserInputError
from cordatlas.genesets.scoring import score_gene_sets


def _log_normalised(n_cells: int = 300, n_genes: int = 2000, seed: int = 0) -> ad.AnnData:
    """Gamma-Poisson counts with varied gene means, normalised and log1p-transformed."""
    rng = np.random.default_rng(seed)
    mu = rng.gamma(0.4, 2.0, size=n_genes)
    counts = rng.poisson(mu * rng.gamma(2.0, 0.5, size=(n_cells, 1))).astype(np.float32)
    adata = ad.AnnData(sp.csr_matrix(counts))
    adata.var_names = [f"G{i}" for i in range(n_genes)]
    adata.obs_names = [f"c{i}" for i in range(n_cells)]
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    return adata


def _scanpy_scores(adata: ad.AnnData, genes: list[str], **kwargs) -> np.ndarray:
    copy = adata.copy()
    sc.tl.score_genes(copy, genes, score_name="s", use_raw=False, **kwargs)
    return copy.obs["s"].to_numpy()


#: scanpy sums a sparse X's rows in float32 (scipy's sum), this scorer in float64: the scores
#: agree to float32 precision there, and to float64 precision for a dense X.
_ATOL = {False: 1e-5, True: 1e-12}


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("seed", [0, 7])
def test_scores_equal_scanpys_score_genes(dense: bool, seed: int) -> None:
    adata = _log_normalised()
    if dense:
        adata.X = adata.X.toarray()
    rng = np.random.default_rng(1)
    sets = {
        f"set{k}": list(rng.choice(adata.var_names, size=size, replace=False))
        for k, size in enumerate([2, 5, 12, 40, 90])
    }
    result = score_gene_sets(
        adata, sets, min_genes=dict.fromkeys(sets, 1), seed=seed, ctrl_size=30, n_bins=20
    )
    assert list(result.scores.columns) == list(sets)
    for name, genes in sets.items():
        expected = _scanpy_scores(adata, genes, random_state=seed, ctrl_size=30, n_bins=20)
        np.testing.assert_allclose(
            result.scores[name].to_numpy(), expected, rtol=0, atol=_ATOL[dense]
        )


def test_unmeasured_genes_are_neither_scored_nor_controls() -> None:
    adata = _log_normalised()
    adata.obs["sample"] = ["A"] * 150 + ["B"] * 150
    absent = [f"G{i}" for i in range(0, 2000, 3)]
    adata.uns["unmeasured_genes"] = {"B": absent}
    matrix = adata.X.tolil()
    matrix[150:, [int(g[1:]) for g in absent]] = 0
    adata.X = sp.csr_matrix(matrix)
    genes = ["G0", "G1", "G2", "G4", "G5"]
    result = score_gene_sets(adata, {"s": genes}, min_genes={"s": 2}, seed=3)
    assert result.unmeasured["s"] == ["G0"]
    # scanpy on the measured genes alone gives the same scores
    kept = adata[:, ~adata.var_names.isin(absent)].copy()
    expected = _scanpy_scores(kept, ["G1", "G2", "G4", "G5"], random_state=3)
    np.testing.assert_allclose(result.scores["s"].to_numpy(), expected, rtol=0, atol=_ATOL[False])


def test_sets_with_too_few_genes_are_not_scored() -> None:
    adata = _log_normalised()
    result = score_gene_sets(
        adata, {"small": ["G1", "NOT_A_GENE"], "ok": ["G1", "G2"]}, min_genes={"small": 2, "ok": 2}
    )
    assert list(result.scores.columns) == ["ok"]
    assert result.missing["small"] == ["NOT_A_GENE"]


def test_nan_expression_is_refused() -> None:
    adata = _log_normalised()
    adata.X.data[5] = np.nan
    with pytest.raises(UserInputError, match="NaN"):
        score_gene_sets(adata, {"s": ["G1", "G2"]}, min_genes={"s": 2})


def test_scores_do_not_depend_on_the_chunk_of_cells() -> None:
    from cordatlas.genesets.scoring import weighted_row_sums

    adata = _log_normalised()
    weights = np.random.default_rng(0).normal(size=(adata.n_vars, 3))
    whole = weighted_row_sums(adata.X, weights, chunk=10_000)
    pieces = weighted_row_sums(adata.X, weights, chunk=7)
    np.testing.assert_allclose(whole, pieces, rtol=1e-12)
    np.testing.assert_allclose(whole, adata.X.toarray().astype(np.float64) @ weights, rtol=1e-9)


def test_cell_cycle_scores_equal_scanpys_score_genes_cell_cycle() -> None:
    from cordatlas.compare.cycling import cell_cycle_phases

    adata = _log_normalised(n_cells=200)
    s_genes, g2m_genes = [f"G{i}" for i in range(0, 60, 3)], [f"G{i}" for i in range(1, 90, 3)]
    entry = {"category": "proliferation", "role": "biological", "expected_direction": None}
    library = {
        "cell_cycle_S": {**entry, "genes": s_genes, "citations": ["Tirosh 2016"]},
        "cell_cycle_G2M": {**entry, "genes": g2m_genes, "citations": ["Tirosh 2016"]},
    }
    ours = cell_cycle_phases(adata, library, min_genes=3, min_score=0.0, seed=4)
    theirs = adata.copy()
    sc.tl.score_genes_cell_cycle(
        theirs, s_genes=s_genes, g2m_genes=g2m_genes, random_state=4, use_raw=False
    )
    for column in ("S_score", "G2M_score"):
        np.testing.assert_allclose(ours[column], theirs.obs[column], rtol=0, atol=_ATOL[False])
    # min_score 0 is scanpy's own phase rule
    assert (ours["phase"] == theirs.obs["phase"]).mean() > 0.99
