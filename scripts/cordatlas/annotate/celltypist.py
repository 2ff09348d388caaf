"""CellTypist labels from a user-supplied model file (never downloaded), beside the marker panel's."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp

from cordatlas.errors import UserInputError

log = logging.getLogger(__name__)

#: CellTypist models are trained on, and expect, log1p of counts per 10,000.
CELLTYPIST_TARGET_SUM = 1e4


def _celltypist_input(adata: ad.AnnData, counts_layer: str | None) -> ad.AnnData:
    """A temporary AnnData with log1p(CP10k) expression of all genes, as CellTypist expects."""
    if counts_layer is not None and counts_layer in adata.layers:
        counts = adata.layers[counts_layer]
    else:
        block = adata.X[: min(adata.n_obs, 500)]
        values = block.data if sp.issparse(block) else np.asarray(block).ravel()
        if values.size and not np.all(np.mod(values, 1) == 0):
            raise UserInputError(
                f"CellTypist needs raw counts: adata has no layers[{counts_layer!r}] and X is "
                "not integer counts; keep raw counts in layers['counts'] (the workflow does)"
            )
        counts = adata.X
    work = ad.AnnData(
        X=sp.csr_matrix(counts, dtype=np.float32),
        obs=pd.DataFrame(index=adata.obs_names.copy()),
        var=pd.DataFrame(index=adata.var_names.astype(str)),
    )
    work.var_names_make_unique()
    sc.pp.normalize_total(work, target_sum=CELLTYPIST_TARGET_SUM)
    sc.pp.log1p(work)
    return work


def celltypist_annotate(
    adata: ad.AnnData,
    model_path: str | os.PathLike[str],
    *,
    cluster_key: str = "leiden",
    majority_voting: bool = True,
    counts_layer: str | None = "counts",
) -> pd.DataFrame:
    """Annotate cells with a CellTypist model read from a local file (never downloaded).

    CellTypist's logistic-regression models expect log1p of counts per 10,000 over all genes
    (Domínguez Conde et al. 2022), not the atlas's median-depth shifted log; a temporary AnnData
    is therefore built from raw counts (``layers[counts_layer]``, or X when it holds counts)
    normalised to 1e4 and log1p-transformed. `adata` itself is not changed except for the two
    obs columns written.

    Parameters
    ----------
    adata
        Cells x genes with raw counts in ``layers[counts_layer]`` (or in X); gene symbols in
        var_names, as the model's features are.
    model_path
        A CellTypist model (.pkl) on disk, trained with `celltypist.train` or downloaded
        beforehand by the user.
    cluster_key
        obs column used as CellTypist's over-clustering for majority voting.
    majority_voting
        Replace each cell's label by its cluster's majority label (CellTypist's
        ``majority_voting``); CellTypist skips voting for 50 cells or fewer.
    counts_layer
        Layer with raw counts.

    Returns
    -------
    pd.DataFrame
        Per cell (index obs_names): ``celltypist_label`` (majority-voted label when voting,
        else the per-cell prediction), ``celltypist_predicted`` (per-cell prediction) and
        ``celltypist_conf`` (the model's probability of ``celltypist_label`` for the cell).
        ``obs["celltypist_label"]`` (categorical) and ``obs["celltypist_conf"]`` are added.

    Raises
    ------
    UserInputError
        The model file is missing or unreadable, shares no gene with the data, or
        `cluster_key` is missing when voting.
    """
    path = Path(model_path)
    if not path.is_file():
        raise UserInputError(
            f"CellTypist model {str(path)!r} not found; set annotation.celltypist_model to an "
            "existing model file (.pkl, trained with celltypist.train or downloaded beforehand: "
            "the workflow never downloads models) or to null to skip CellTypist"
        )
    if majority_voting and cluster_key not in adata.obs:
        raise UserInputError(
            f"CellTypist majority voting needs the clusters in obs[{cluster_key!r}], which is "
            f"missing; use one of {sorted(adata.obs.columns)} or majority_voting=False"
        )
    import celltypist
    from celltypist import models

    try:
        # an absolute path (it contains "/") is never looked up among downloadable models
        model = models.Model.load(model=str(path.resolve()))
    except Exception as err:  # CellTypist raises bare Exception for unreadable pickles
        raise UserInputError(
            f"CellTypist model {str(path)!r} could not be read ({err}); pass a model saved by "
            "celltypist (Model.write or celltypist.train)"
        ) from None
    work = _celltypist_input(adata, counts_layer)
    shared = work.var_names.intersection(pd.Index(model.features))
    if len(shared) == 0:
        raise UserInputError(
            f"CellTypist model {str(path)!r} shares no gene with the data (model genes e.g. "
            f"{list(model.features[:3])}, data genes e.g. {list(work.var_names[:3])}); use a "
            "model trained on gene symbols of the same species"
        )
    log.info(
        "CellTypist: model %s, %d of its %d genes in the data",
        path,
        len(shared),
        len(model.features),
    )
    if majority_voting:
        work.obs["over_clustering"] = adata.obs[cluster_key].astype(str).to_numpy()
    result = celltypist.annotate(
        work,
        model=model,
        majority_voting=majority_voting,
        over_clustering="over_clustering" if majority_voting else None,
    )
    labels = result.predicted_labels
    predicted = labels["predicted_labels"].astype(str)
    if majority_voting and "majority_voting" in labels:
        final = labels["majority_voting"].astype(str)
    else:
        final = predicted
    probability = result.probability_matrix
    column = probability.columns.get_indexer(final.to_numpy())
    conf = probability.to_numpy()[np.arange(len(final)), column]
    table = pd.DataFrame(
        {
            "celltypist_label": final.to_numpy(),
            "celltypist_predicted": predicted.to_numpy(),
            "celltypist_conf": conf.astype(np.float64),
        },
        index=adata.obs_names.copy(),
    )
    adata.obs["celltypist_label"] = pd.Categorical(table["celltypist_label"])
    adata.obs["celltypist_conf"] = table["celltypist_conf"].to_numpy()
    return table
