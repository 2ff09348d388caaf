"""On simulated data: what the simulator planted beside what the workflow recovered (joins, no tests)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from cordatlas.vocabulary import DONOR_LEVEL

#: A planted composition shift: expected proportions at least this far apart (log2, 2-fold).
PLANTED_LOG2 = 1.0


def _recovered(planted: float, call: str, *, threshold: float) -> str:
    """Whether a call matches a planted signed effect (``planted`` on the log2 scale)."""
    found = call.startswith(("higher in", "lower in"))
    if not np.isfinite(planted) or abs(planted) < threshold:
        return "found (nothing planted)" if found else "correctly none"
    if not found:
        return "missed"
    return "recovered" if call.startswith("higher") == (planted > 0) else "wrong sign"


def composition_truth(
    planted: pd.DataFrame, findings: pd.DataFrame, contrast: tuple[str, str]
) -> pd.DataFrame:
    """Planted log2 ratio of expected proportions beside the observed one and the call."""
    condition, reference = contrast
    wide = planted.pivot_table(
        index="cell_type", columns="condition", values="expected_proportion", aggfunc="first"
    )
    if condition not in wide or reference not in wide:
        return pd.DataFrame()
    log2 = np.log2(wide[condition] / wide[reference])
    rows = findings[findings["kind"] == "composition"].set_index("cell_type")
    out = []
    for cell_type, value in log2.items():
        call = str(rows.at[cell_type, "call"]) if cell_type in rows.index else "not tested"
        out.append(
            {
                "cell_type": cell_type,
                f"planted {condition}": wide.at[cell_type, condition],
                f"planted {reference}": wide.at[cell_type, reference],
                "planted log2 ratio": float(value),
                "call": call,
                "padj": rows.at[cell_type, "padj"] if cell_type in rows.index else math.nan,
                "recovered": _recovered(float(value), call, threshold=PLANTED_LOG2),
            }
        )
    return pd.DataFrame(out).sort_values("planted log2 ratio", kind="mergesort")


def de_truth(planted: pd.DataFrame, de_genes: pd.DataFrame | None, *, alpha: float) -> pd.DataFrame:
    """Per cell type and planted programme: genes planted, and found at padj < alpha, same sign."""
    programmes = planted[planted["programme"].astype(str) != "random"]
    if de_genes is None:
        de_genes = pd.DataFrame(columns=["cell_type", "gene", "log2FC", "padj", "evidence"])
    joined = programmes.merge(
        de_genes[["cell_type", "gene", "log2FC", "padj", "evidence"]],
        on=["cell_type", "gene"], how="left", suffixes=("_planted", ""),
    )  # fmt: skip
    joined["found"] = (joined["padj"] < alpha) & (
        np.sign(joined["log2FC"]) == np.sign(joined["log2FC_planted"])
    )
    table = joined.groupby(["cell_type", "programme"], sort=True).agg(
        genes_planted=("gene", "size"),
        mean_planted_log2FC=("log2FC_planted", "mean"),
        genes_found=("found", "sum"),
        evidence=("evidence", lambda s: ", ".join(sorted({str(v) for v in s.dropna()}))),
    )
    return table.reset_index()


def signature_truth(planted: pd.DataFrame, findings: pd.DataFrame) -> pd.DataFrame:
    """Planted programmes that are library signatures: the signature's call in that cell type."""
    programmes = planted[planted["programme"].astype(str) != "random"]
    means = programmes.groupby(["cell_type", "programme"])["log2FC"].mean()
    rows = findings[findings["kind"] == "signature"].set_index(["cell_type", "feature"])
    out = []
    for (cell_type, programme), value in means.items():
        if (cell_type, programme) not in rows.index:
            continue
        row = rows.loc[(cell_type, programme)]
        call = str(row["call"])
        donor_level = row["evidence"] == DONOR_LEVEL
        out.append(
            {
                "cell_type": cell_type,
                "signature": programme,
                "mean planted log2FC": float(value),
                "call": call,
                "padj": row["padj"],
                "evidence": row["evidence"],
                "recovered": _recovered(float(value), call, threshold=0.0)
                if donor_level else "not tested at donor level",
            }
        )  # fmt: skip
    return pd.DataFrame(out)
