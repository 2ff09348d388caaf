"""Whether a faster run still gives the same answers: labels, clusters and DE against the truth.

The benchmark runs on the simulator, whose truth tables say each barcode's cell type and each
planted DE gene; a change made for speed must keep these (issue: cluster ARI >= 0.95 against
the previous path on the same data, label accuracy and DE recall / false-discovery proportion
unchanged or better).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["cluster_agreement", "de_recovery", "label_agreement", "run_quality"]

#: A planted DE gene counts when its planted |log2FC| is at least this (as the demo test).
PLANTED_MIN_LOG2FC = 1.0


def _true_types(obs: pd.DataFrame, truth_cells: pd.DataFrame) -> np.ndarray:
    labels = truth_cells.set_index(["sample", "barcode"])["cell_type"]
    keys = list(zip(obs["sample"].astype(str), obs["barcode"].astype(str), strict=True))
    return labels.reindex(keys).astype(str).to_numpy()


def label_agreement(obs: pd.DataFrame, truth_cells: pd.DataFrame) -> dict[str, float]:
    """Accuracy and ARI of ``obs["cell_type"]`` against the planted types, singlets only."""
    from sklearn.metrics import adjusted_rand_score

    true = _true_types(obs, truth_cells)
    predicted = obs["cell_type"].astype(str).to_numpy()
    singlets = (true != "doublet") & (true != "nan")
    return {
        "label_accuracy": float((predicted[singlets] == true[singlets]).mean()),
        "label_ari": float(adjusted_rand_score(true[singlets], predicted[singlets])),
    }


def cluster_agreement(obs: pd.DataFrame, reference_obs: pd.DataFrame, key: str = "leiden") -> float:
    """ARI of two runs' clusterings over the cells both kept."""
    from sklearn.metrics import adjusted_rand_score

    shared = obs.index.intersection(reference_obs.index)
    return float(
        adjusted_rand_score(
            reference_obs.loc[shared, key].astype(str), obs.loc[shared, key].astype(str)
        )
    )


def de_recovery(
    de: pd.DataFrame, truth_de: pd.DataFrame, tested: set[str], alpha: float = 0.05
) -> dict[str, float]:
    """Recall of planted genes (|log2FC| >= 1, same sign, padj < alpha) and the hits' FDP."""
    planted = truth_de[
        truth_de["cell_type"].isin(tested) & (truth_de["log2FC"].abs() >= PLANTED_MIN_LOG2FC)
    ]
    hits = de[(de["padj"] < alpha) & de["cell_type"].isin(tested)]
    found = planted.merge(hits, on=["cell_type", "gene"], suffixes=("_true", ""))
    same_sign = (np.sign(found["log2FC"]) == np.sign(found["log2FC_true"])).sum()
    planted_pairs = set(zip(truth_de["cell_type"], truth_de["gene"], strict=True))
    false = [p not in planted_pairs for p in zip(hits["cell_type"], hits["gene"], strict=True)]
    return {
        "de_recall": float(same_sign / len(planted)) if len(planted) else float("nan"),
        "de_fdp": float(np.mean(false)) if false else 0.0,
        "de_hits": float(len(hits)),
    }


def run_quality(
    workdir: str | os.PathLike[str], reference: str | os.PathLike[str] | None = None
) -> dict[str, float]:
    """Every quality number of one benchmark run (and its cluster ARI against `reference`)."""
    from cordatlas.io.stage import read_without_matrices

    workdir = Path(workdir)
    truth = workdir / "resources/demo/truth"
    obs = read_without_matrices(workdir / "results/atlas.h5ad").obs
    out = label_agreement(obs, pd.read_csv(truth / "truth_cells.tsv", sep="\t"))
    plan = pd.read_csv(workdir / "results/de/de_plan.tsv", sep="\t")
    de_all = workdir / "results/de/de_all.tsv.gz"
    if de_all.exists():
        tested = set(plan.loc[plan["method"] == "pseudobulk_deseq2", "cell_type"])
        out |= de_recovery(
            pd.read_csv(de_all, sep="\t"), pd.read_csv(truth / "truth_de.tsv", sep="\t"), tested
        )
    if reference is not None and (Path(reference) / "results/atlas.h5ad").exists():
        other = read_without_matrices(Path(reference) / "results/atlas.h5ad").obs
        out["cluster_ari_vs_reference"] = cluster_agreement(obs, other)
    return out
