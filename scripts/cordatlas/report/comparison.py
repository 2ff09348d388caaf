"""Sections of the cord-vs-adult comparison: composition, DE per cell type, signatures, cycling, development, enrichment."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cordatlas.compare.development import NOT_ESTIMABLE
from cordatlas.report import blocks as b
from cordatlas.report.blocks import Block, Page
from cordatlas.vocabulary import DONOR_LEVEL, EVIDENCE, NOTE

#: Genes (lowest padj) in each cell type's top-gene table.
N_TOP = 10


def composition_section(
    page: Page,
    tests: pd.DataFrame | None,
    findings: pd.DataFrame | None,
    figure: str | None,
    proportions: pd.DataFrame | None = None,
) -> Block:
    """The composition tests with their 95 % CI (from the findings rows), the figure, the data."""
    blocks: list[Block] = [page.figure(figure, "Cell-type proportions per donor")]
    if tests is None:
        blocks.append(b.absent("results/composition/composition_tests.tsv"))
        return b.section("composition", "Composition", blocks)
    shown = tests.copy()
    if findings is not None:
        rows = findings[findings["kind"] == "composition"].set_index("cell_type")
        for column in ("ci_low", "ci_high", "call"):
            shown[column] = shown["cell_type"].astype(str).map(rows[column])
    columns = ["cell_type", "mean_proportion_condition", "mean_proportion_reference",
               "log2_ratio", "difference", "ci_low", "ci_high", "padj", "call", "n_condition",
               "n_reference", "transform", "covariates", EVIDENCE, NOTE, "presence"]  # fmt: skip
    blocks.append(page.table(shown, "composition", columns=columns, caption=(
        "Share of each cell type among labelled cells per donor, tested across donors; "
        "difference and CI on the transformed scale")))  # fmt: skip
    if proportions is not None:
        blocks.append(b.group("Cells and proportion of each cell type per donor",
                              [page.table(proportions, "proportions")]))  # fmt: skip
    return b.section("composition", "Composition", blocks)


def _by_stem(paths: list[str]) -> dict[str, str]:
    return {Path(p).name.removesuffix(".png"): p for p in paths}


def de_cell_type(page: Page, row: pd.Series, table: str | None, figures: dict[str, str]) -> Block:
    """One cell type's DE: the plan's note, top genes, volcano, heatmap, the full table."""
    slug, evidence = str(row["slug"]), str(row[EVIDENCE])
    note = row.get(NOTE, row.get("reason", ""))
    blocks: list[Block] = [b.text(f"{row['method']}: {note}")]
    if table is None:
        blocks.append(b.absent(f"a DE table for {row['cell_type']} (not tested)"))
    else:
        genes = pd.read_csv(table, sep="\t", dtype={"gene": str, "cell_type": str},
                            keep_default_na=False, na_values={"padj": [""], "pvalue": [""]})  # fmt: skip
        top = genes.sort_values("padj", na_position="last", kind="mergesort").head(N_TOP)
        blocks.append(page.table(top, f"de-{slug}", caption=f"Top {N_TOP} genes by padj",
                                 columns=["gene", "log2FC", "lfcSE", "padj", "base_mean"]))  # fmt: skip
        blocks.append(b.link(page.href(table), f"full table ({len(genes)} genes, TSV)"))
    for kind in ("volcano", "heatmap"):
        figure = figures.get(f"{slug}_{kind}")
        if figure is not None:
            blocks.append(page.figure(figure, f"{row['cell_type']}: {kind}"))
    if evidence == DONOR_LEVEL:
        title = f"{row['cell_type']}: {row.get('n_significant', 0)} genes at padj < {page.alpha:g}"
    else:  # an exploratory or confounded test ranks genes; its count is not a number of findings
        title = f"{row['cell_type']}: gene ranking only ({evidence}), no findings"
    return b.group(title, blocks, anchor=f"de-{slug}", badge=evidence)


def de_section(
    page: Page, summary: pd.DataFrame | None, tables: list[str], figures: list[str]
) -> Block:
    """The DE summary across cell types, then each cell type's detail."""
    if summary is None:
        return b.section("de", "Differential expression", [b.absent("results/de/de_summary.tsv")])
    by_slug = {Path(t).stem: t for t in tables}
    shown = summary.copy()
    ranked_only = shown[EVIDENCE].astype(str) != DONOR_LEVEL
    shown.loc[ranked_only, ["n_significant", "n_up", "n_down"]] = np.nan
    blocks: list[Block] = [
        b.text("Per cell type: the test the donors allowed (pseudobulk DESeq2 with donors as the "
               "unit; below the minimum an exploratory cell-level ranking), genes tested and "
               f"found at padj < {page.alpha:g}. Exploratory and confounded rows show no counts: "
               "their p-values treat cells (or one technology per condition) as replicates, so "
               "their genes are a ranking to look at, not findings. Click a cell type for its "
               "genes and figures."),
        page.table(shown, "de-summary", links={"cell_type": lambda r: f"#de-{r['slug']}"},
                   columns=["cell_type", "method", EVIDENCE, "n_replicates_condition",
                            "n_replicates_reference", "n_cells_condition", "n_cells_reference",
                            "n_genes_tested", "n_significant", "n_up", "n_down"]),
    ]  # fmt: skip
    pictures = _by_stem(figures)
    for _, row in summary.iterrows():
        blocks.append(de_cell_type(page, row, by_slug.get(str(row["slug"])), pictures))
    return b.section("de", "Differential expression", blocks)


SIGNATURE_COLUMNS = ["cell_type", "difference", "ci_low", "ci_high", "padj", "n_condition",
                     "n_reference", "expected", "agreement", "control", EVIDENCE, NOTE]  # fmt: skip


def signatures_section(
    page: Page,
    findings: pd.DataFrame | None,
    heatmap: str | None,
    donors: str | None,
    genes: pd.DataFrame | None = None,
) -> Block:
    """The heatmap, then each signature: its rows with the stress control beside, its donors."""
    blocks: list[Block] = [page.figure(heatmap, "Signature differences per cell type")]
    rows = None if findings is None else findings[findings["kind"] == "signature"]
    if rows is None or rows.empty:
        blocks.append(b.absent("results/signatures/signature_tests.tsv"))
        return b.section("signatures", "Signatures", blocks)
    blocks.append(b.text("Each signature in each cell type, donors as the unit, beside the "
                         "sample-handling (stress / processing delay) control in the same cell "
                         "type: a contrast whose control also differs is marked caution."))  # fmt: skip
    if genes is not None:
        blocks.append(b.group("Genes of each signature found in the data",
                              [page.table(genes, "signature-genes")]))  # fmt: skip
    for name, part in rows.groupby("feature", sort=False):
        shown = part.rename(columns={"effect": "difference"})
        inner = [page.table(shown, f"sig-{name}", columns=SIGNATURE_COLUMNS)]
        figure = Path(donors) / f"{name}.png" if donors else None
        if figure is not None and figure.is_file():
            inner.append(page.figure(str(figure), f"{name}: donor means per cell type"))
        found = int((part["call"].str.startswith(("higher", "lower"))).sum())
        blocks.append(b.group(f"{name}: {found} cell types with a donor-level difference", inner,
                              anchor=f"sig-{name}"))  # fmt: skip
    return b.section("signatures", "Signatures", blocks)


def table_section(
    page: Page, anchor: str, title: str, table: pd.DataFrame | None, figure: str | None,
    *, missing: str, caption: str,
) -> Block:  # fmt: skip
    """A section of one figure and one table (enrichment)."""
    blocks = [page.figure(figure, caption)]
    blocks.append(page.table(table, anchor) if table is not None else b.absent(missing))
    return b.section(anchor, title, blocks)


CYCLING_COLUMNS = ["cell_type", "mean_fraction_condition", "mean_fraction_reference",
                   "difference", "ci_low", "ci_high", "padj", "n_condition", "n_reference",
                   "transform", "method", "covariates", EVIDENCE, NOTE]  # fmt: skip


def cycling_section(
    page: Page, tests: pd.DataFrame | None, fractions: pd.DataFrame | None
) -> Block:
    """The cycling-fraction test per cell type, then each donor's fraction (tables only)."""
    if tests is None:
        return b.section("cycling", "Cycling fraction",
                         [b.absent("results/signatures/cycling_tests.tsv")])  # fmt: skip
    condition, reference = page.contrast
    blocks: list[Block] = [b.text(
        "Fraction of each cell type's cells in S or G2/M (Tirosh et al. 2016 genes, scanpy "
        "score_genes_cell_cycle; a cell is cycling when its larger score reaches "
        "signatures.cycling_min_score, see Methods), per donor, compared across donors as "
        f"composition is ({condition} - {reference}; difference and 95 % CI on the transformed "
        "scale).")]  # fmt: skip
    tested = tests[tests[EVIDENCE].astype(str) != "not_testable"]
    if tested.empty:
        reasons = sorted({str(n) for n in tests.get(NOTE, pd.Series(dtype=str)).dropna() if n})
        blocks.append(b.text("No cell type could be tested"
                             + (f": {'; '.join(reasons)}." if reasons else ".")))  # fmt: skip
    blocks.append(page.table(tests, "cycling-tests", columns=CYCLING_COLUMNS,
                             caption="Cycling fraction per cell type, donors as the unit"))  # fmt: skip
    if fractions is None:
        blocks.append(b.absent("results/signatures/cycling.tsv"))
    else:
        blocks.append(b.group("Cells and cycling cells per donor and cell type",
                              [page.table(fractions, "cycling-donors")]))  # fmt: skip
    return b.section("cycling", "Cycling fraction", blocks)


SUBSET_SHOWN = ["lineage", "cell_type", "mean_proportion_condition",
                "mean_proportion_reference", "difference", "ci_low", "ci_high", "padj",
                "n_condition", "n_reference", "covariates", EVIDENCE, NOTE]  # fmt: skip
COMPARTMENT_SHOWN = ["lineage", "signature", "difference_crude", "ci_low_crude",
                     "ci_high_crude", "padj_crude", "difference_adjusted", "ci_low_adjusted",
                     "ci_high_adjusted", "padj_adjusted", "share_explained_by_mix", "verdict",
                     "subtypes_used", "n_condition", "n_reference", EVIDENCE, NOTE]  # fmt: skip


def compartments_section(
    page: Page,
    subsets: pd.DataFrame | None,
    adjusted: pd.DataFrame | None,
    figure: str | None,
) -> Block:
    """Within-lineage comparisons: subtype shares of each lineage, signatures at one subtype mix.

    Lineages with fewer than two subtypes present are left out of both tables here (their rows
    in the files say why they were not tested); the adjusted table lists the tested rows, the
    ones the subtype mix explains first.
    """
    title = "Within-lineage compartments"
    blocks: list[Block] = [page.figure(figure, "Subtype mix per lineage; crude vs adjusted")]
    if subsets is None and adjusted is None:
        blocks.append(b.absent("results/compartments/subset_composition.tsv"))
        return b.section("compartments", title, blocks)
    condition, reference = page.contrast
    blocks.append(b.text(
        "Cord T cells are mostly naive, so a lineage-level difference can be the mix of "
        "compartments rather than a difference within any of them. First each subtype's share "
        "of its lineage's cells per donor (HSPC subsets where progenitors are present), tested "
        "as composition is; then each lineage's signature scores compared crude and directly "
        "standardised to one subtype mix (the pooled mix of all donors), "
        f"{condition} - {reference}, donors as the unit."))  # fmt: skip
    if subsets is None:
        blocks.append(b.absent("results/compartments/subset_composition.tsv"))
    else:
        mixes = subsets[pd.to_numeric(subsets["n_subtypes"], errors="coerce") >= 2]
        if mixes.empty:
            blocks.append(b.text("No lineage has two or more subtypes in these data."))
        else:
            blocks.append(page.table(mixes, "subset-composition", columns=SUBSET_SHOWN,
                                     caption="Share of each subtype among its lineage's cells; "
                                     "difference and CI on the transformed scale"))  # fmt: skip
    if adjusted is None:
        blocks.append(b.absent("results/compartments/compartment_adjusted.tsv"))
    else:
        tested = adjusted[adjusted[EVIDENCE].astype(str) != "not_testable"]
        if tested.empty:
            reasons = sorted({str(n) for n in adjusted.get(NOTE, pd.Series(dtype=str)).dropna()
                              if n})  # fmt: skip
            blocks.append(b.text("No lineage x signature could be compared at one subtype mix"
                                 + (f": {'; '.join(reasons)}." if reasons else ".")))  # fmt: skip
        else:
            explained = int((tested["verdict"].astype(str) == "explained_by_compartment_mix").sum())
            order = (tested["verdict"].astype(str) != "explained_by_compartment_mix").astype(int)
            shown = tested.assign(_o=order).sort_values(["_o", "padj_crude"]).drop(columns="_o")
            blocks.append(b.text(f"{explained} of {len(tested)} lineage x signature "
                                 "differences are explained by the subtype mix."))  # fmt: skip
            blocks.append(page.table(shown, "compartment-adjusted", columns=COMPARTMENT_SHOWN,
                                     caption="Signature differences crude and at one subtype "
                                     "mix (direct standardisation)"))  # fmt: skip
    return b.section("compartments", title, blocks)


DEVELOPMENT_COLUMNS = ["cell_type", "mean_condition", "mean_reference", "difference", "ci_low",
                       "ci_high", "padj", "n_condition", "n_reference", "method", EVIDENCE,
                       NOTE]  # fmt: skip


def not_estimable(axis: pd.DataFrame) -> pd.DataFrame:
    """The axis rows of cell types without any donor projection (one row each, with the reason)."""
    method = axis["method"].astype(str) if "method" in axis else pd.Series("", index=axis.index)
    score = (pd.to_numeric(axis["axis_score"], errors="coerce") if "axis_score" in axis
             else pd.Series(np.nan, index=axis.index))  # fmt: skip
    placed = set(axis.loc[(method != NOT_ESTIMABLE) & np.isfinite(score), "cell_type"].astype(str))
    rows = axis[~axis["cell_type"].astype(str).isin(placed)]
    return rows.drop_duplicates("cell_type")


def development_section(
    page: Page,
    axis: pd.DataFrame | None,
    contrast: pd.DataFrame | None,
    figure: str | None,
) -> Block:
    """The donors on the fetal-to-adult axis and the contrast, or plainly why there is no axis."""
    title = "Development axis"
    if axis is None:
        return b.section("development", title,
                         [b.absent("results/signatures/development_axis.tsv")])  # fmt: skip
    missing = not_estimable(axis)
    reasons = sorted({str(n) for n in missing.get(NOTE, pd.Series(dtype=str)).dropna() if n})
    if len(missing) == axis["cell_type"].astype(str).nunique():
        # no cell type placed: the figure would be an empty frame, never shown as a result
        what = ", ".join(missing["cell_type"].astype(str)) or "no cell type"
        blocks: list[Block] = [
            b.text(f"The development axis is not estimable in this study ({what}): "
                   + ("; ".join(reasons) if reasons else "no donor projection") + "."),
            page.table(missing, "development-not-estimable",
                       columns=["cell_type", "n_sets", "scale", NOTE]),
        ]  # fmt: skip
        return b.section("development", title, blocks)
    condition, reference = page.contrast
    blocks = [
        b.text("Each donor's cells projected between an external reference's adult (0) and "
               "fetal (1) profile over the library's ontogeny genes, per cell type; the donor's "
               "95 % interval is over its cells (cell sampling only). The contrast is "
               f"{condition} - {reference} of the donors' projections (Welch t, donors as the "
               "unit, 95 % CI)."),
        page.figure(figure, "Donors on the fetal-to-adult axis"),
    ]  # fmt: skip
    if contrast is None:
        blocks.append(b.absent("results/signatures/development_contrast.tsv"))
    else:
        blocks.append(page.table(contrast, "development-contrast", columns=DEVELOPMENT_COLUMNS,
                                 caption=f"{condition} vs {reference} on the axis per cell type"))  # fmt: skip
    if not missing.empty:
        blocks.append(b.text("Not estimable: " + "; ".join(
            f"{r['cell_type']} ({r.get(NOTE, '') or r.get('scale', '')})"
            for _, r in missing.iterrows()) + "."))  # fmt: skip
    placed = axis[~axis["cell_type"].astype(str).isin(set(missing["cell_type"].astype(str)))]
    blocks.append(b.group("Each donor's projection",
                          [page.table(placed, "development-donors")]))  # fmt: skip
    return b.section("development", title, blocks)
