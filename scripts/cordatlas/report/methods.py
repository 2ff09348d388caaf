"""Methods written from the configuration the run actually used: each step, its parameters, its citation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

#: Citations of the methods the workflow runs (as the config's comments cite them).
CITATIONS = {
    "mad": "Germain PL, Sonrel A, Robinson MD 2020. pipeComp. Genome Biol 21:227",
    "classifier": "Germain PL et al. 2021. Doublet identification with scDblFinder. "
    "F1000Research 10:979",
    "scrublet": "Wolock SL, Lopez R, Klein AM 2019. Scrublet. Cell Syst 8:281-291",
    "hvg": "Stuart T et al. 2019. Comprehensive integration of single-cell data. Cell 177:1888",
    "harmony": "Korsunsky I et al. 2019. Harmony. Nat Methods 16:1289-1296",
    "leiden": "Traag VA, Waltman L, van Eck NJ 2019. From Louvain to Leiden. Sci Rep 9:5233",
    "faiss": "Douze M et al. 2024. The Faiss library. arXiv:2401.08281",
    "umap": "McInnes L, Healy J, Melville J 2018. UMAP. arXiv:1802.03426",
    "umap_init": "Kobak D, Linderman GC 2021. Initialization is critical for preserving global "
    "data structure in both t-SNE and UMAP. Nat Biotechnol 39:156-157",
    "scanpy": "Wolf FA, Angerer P, Theis FJ 2018. SCANPY. Genome Biol 19:15",
    "celltypist": "Dominguez Conde C et al. 2022. Cross-tissue immune cell analysis. "
    "Science 376:eabl5197",
    "deseq2": "Love MI, Huber W, Anders S 2014. DESeq2. Genome Biol 15:550; Muzellec B et al. "
    "2023. PyDESeq2. Bioinformatics 39:btad547",
    "pseudobulk": "Squair JW et al. 2021. Confronting false discoveries in single-cell "
    "differential expression. Nat Commun 12:5692",
    "filter": "Chen Y, Lun ATL, Smyth GK 2016. From reads to genes to pathways. F1000Research "
    "5:1438",
    "propeller": "Phipson B et al. 2022. propeller. Bioinformatics 38:4720-4726",
    "barnyard": "Macosko EZ et al. 2015. Drop-seq. Cell 161:1202-1214 (species-mixing "
    "experiments); multiplet cut by MADs as in scater's isOutlier (McCarthy DJ et al. 2017, "
    "Bioinformatics 33:1179)",
    "integration_metrics": "Luecken MD et al. 2022. Benchmarking atlas-level data integration. "
    "Nat Methods 19:41-50",
    "ebayes": "Smyth GK 2004. Linear models and empirical Bayes methods for assessing "
    "differential expression in microarray experiments. Stat Appl Genet Mol Biol 3:3",
    "camera": "Wu D, Smyth GK 2012. Camera: a competitive gene set test accounting for inter-gene "
    "correlation. Nucleic Acids Res 40:e133",
    "voom": "Law CW, Chen Y, Shi W, Smyth GK 2014. voom. Genome Biol 15:R29",
    "welch": "Welch BL 1947. The generalization of 'Student's' problem when several different "
    "population variances are involved. Biometrika 34:28-35",
    "apeglm": "Zhu A, Ibrahim JG, Love MI 2019. Heavy-tailed prior distributions for sequence "
    "count data. Bioinformatics 35:2084-2092",
    "soupx": "Young MD, Behjati S 2020. SoupX removes ambient RNA contamination from droplet-based "
    "single-cell RNA sequencing data. GigaScience 9:giaa151",
    "tirosh": "Tirosh I et al. 2016. Dissecting the multicellular ecosystem of metastatic "
    "melanoma by single-cell RNA-seq. Science 352:189-196",
    "standardisation": "Keiding N, Clayton D 2014. Standardization and control for confounding "
    "in observational studies: a historical perspective. Stat Sci 29:529-558. "
    "doi:10.1214/13-STS453",
    "bh": "Benjamini Y, Hochberg Y 1995. Controlling the false discovery rate. J R Stat Soc B "
    "57:289-300",
}


def _get(config: Mapping[str, Any], dotted: str, default: object = None) -> Any:
    value: Any = config
    for key in dotted.split("."):
        if not isinstance(value, Mapping) or key not in value:
            return default
        value = value[key]
    return value


def _params(config: Mapping[str, Any], *keys: str) -> str:
    """``key = value`` for each dotted config key, as the config holds it."""
    return "; ".join(f"{k} = {_get(config, k)!r}" for k in keys)


def methods_table(config: Mapping[str, Any]) -> pd.DataFrame:
    """One row per step: what ran, with which parameters (from `config`), citing whom."""
    doublets = str(_get(config, "qc.doublets.method", "classifier"))
    integration = str(_get(config, "atlas.integration", "none"))
    model = _get(config, "annotation.celltypist_model")
    rows = [
        ("species (mixed-species files)", "each cell's majority species; cross-species "
         "multiplets where the minority share exceeds that species' own median + MADs (with a "
         "floor), as barnyard analyses call them",
         _params(config, "ingest.species", "ingest.species_multiplet_nmads",
                 "ingest.species_multiplet_min_share", "ingest.species_multiplet_min_cells"),
         CITATIONS["barnyard"]),
        ("quality control", "adaptive median-absolute-deviation thresholds per sample, "
         "absolute floors and a mitochondrial ceiling; haemoglobin-rich cells judged on their "
         "counts outside globin genes and exempt from the top-20-genes rule",
         _params(config, "qc.nmads", "qc.min_counts", "qc.min_genes", "qc.max_pct_counts_mt",
                 "qc.max_pct_counts_hb", "qc.hb_rich_min_pct_hb"), CITATIONS["mad"]),
        ("doublets", f"{doublets} doublet scores, cut by "
         f"{_get(config, 'qc.doublets.threshold_method')}",
         _params(config, "qc.doublets.remove", "qc.doublets.expected_doublet_rate",
                 "qc.doublets.threshold"), CITATIONS.get(doublets, "")),
        ("merge and genes", "samples merged on a gene join (Ensembl ids renamed to symbols; too "
         "few shared genes refused); genes a sample did not measure are left out of every "
         "cross-sample analysis; rare genes dropped",
         _params(config, "atlas.gene_join", "atlas.min_shared_genes", "qc.min_cells_per_gene"),
         ""),
        ("normalisation", "size-factor normalisation and shifted log; highly variable genes "
         "(seurat_v3) per batch, batches its loess cannot fit pooled (the log and atlas say "
         "which); PCA of the highly variable genes scaled to unit variance and clipped at 10 "
         "(scanpy's scale and pca, computed from the genes' covariance)",
         _params(config, "atlas.target_sum", "atlas.n_top_genes", "atlas.hvg_batch_key",
                 "atlas.n_pcs"), f"{CITATIONS['scanpy']}; {CITATIONS['hvg']}"),
        ("integration", f"{integration} on the PCA embedding (counts untouched); verdict good / "
         "weak / failed from the share of cells in clusters shared by both conditions and in "
         "one-batch clusters (this workflow's stated cuts)",
         _params(config, "atlas.integration", "atlas.integration_key", "atlas.working_resolution"),
         (CITATIONS["harmony"] + "; " if integration == "harmony" else "")
         + CITATIONS["integration_metrics"]),
        ("clustering and UMAP", "kNN graph (exact, faiss flat index, up to exact_knn_max_cells "
         "cells, with UMAP's fuzzy-union connectivities as scanpy computes them; pynndescent "
         "above), Leiden (igraph) at each resolution, UMAP from the umap_init layout",
         _params(config, "atlas.n_neighbors", "atlas.exact_knn_max_cells", "atlas.leiden_resolutions",
                 "atlas.working_resolution", "atlas.umap_min_dist", "atlas.umap_init",
                 "atlas.seed"),
         f"{CITATIONS['faiss']}; {CITATIONS['leiden']}; {CITATIONS['umap']}"
         + ("; " + CITATIONS["umap_init"] if _get(config, "atlas.umap_init") == "pca" else "")),
        ("annotation", "cluster scores on a cited marker panel (scanpy's score_genes method, every set in one "
         "pass over the matrix, same seeded control genes), each cell "
         "on the markers its sample measured; lineage first, then subtypes within it, both "
         "needing the minimum score and margin"
         + ("; CellTypist beside it" if model else ""),
         _params(config, "annotation.panel", "annotation.extra_panel", "annotation.min_score",
                 "annotation.min_margin", "annotation.min_detected_fraction",
                 "annotation.celltypist_model"),
         CITATIONS["scanpy"] + (f"; {CITATIONS['celltypist']}" if model else "")),
    ]  # fmt: skip
    rows += _comparison_rows(config)
    return pd.DataFrame(rows, columns=["step", "method", "parameters", "citation"])


def _comparison_rows(config: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    contrast = f"{_get(config, 'contrast.condition')} vs {_get(config, 'contrast.reference')}"
    return [
        ("differential expression", f"pseudobulk per cell type x replicate, DESeq2 Wald test "
         f"({contrast}) with apeGLM-shrunk log2FC beside the unshrunk one (PyDESeq2's "
         "pipeline and objectives, its per-gene fits solved for all genes at once: the same "
         "estimates to optimiser tolerance, docs/performance.md); genes flagged when "
         "another cell type's spillover or ambient RNA can explain them (this type holds at "
         "most contamination_max_fraction of the source's CPM, the source's estimated "
         "contamination explains at least contamination_min_explained of it, its change has "
         "the DE sign; kept, not removed); 3 or fewer donors a side marked low power; below the "
         "donor minimum an exploratory cell-level Wilcoxon test; BH within the pre-specified "
         "family (genes of library sets with an expectation in the cell type) and within the "
         "exploratory one (padj_all over all); genes significant in their family refitted "
         "leaving out each donor in turn (survives_leave_one_out, at most loo_max_genes judged)",
         _params(config, "comparison.replicate_key", "comparison.min_cells_per_replicate",
                 "comparison.min_replicates_per_group", "comparison.min_gene_counts",
                 "comparison.covariates", "comparison.alpha",
                 "comparison.contamination_max_fraction", "comparison.contamination_min_explained",
                 "comparison.low_power_max_replicates", "comparison.loo_max_genes"),
         f"{CITATIONS['deseq2']}; {CITATIONS['apeglm']}; {CITATIONS['pseudobulk']}; "
         f"{CITATIONS['filter']}; {CITATIONS['soupx']}"),
        ("composition", "propeller: per-replicate proportions with speckle's half-cell "
         "pseudocount, logit (or asin) transformed, a linear model per cell type, limma "
         "empirical-Bayes moderated t (variance prior trended on the mean, non-robust), 95 % CI "
         "on the transformed scale, back-transformed log2 ratio; BH within family, "
         "significant rows refitted leaving out each donor in turn",
         _params(config, "comparison.composition_transform", "comparison.composition_trend",
                 "comparison.exclude_cell_types", "comparison.low_power_max_replicates"),
         f"{CITATIONS['propeller']}; {CITATIONS['ebayes']}; {CITATIONS['bh']}"),
        ("signatures", "per-cell scores of a cited library, replicate means; per cell type "
         "Student's t (balanced groups), Welch's t (unbalanced, no covariate) or an OLS model "
         "(covariates), each effect with a 95 % CI; BH within the pre-specified family (the "
         "library's literature expectations) and within the exploratory one; 3 or fewer donors "
         "a side marked low power; the stress / processing-delay control flagged at raw p < "
         "control_flag_pvalue or |difference| >= control_flag_difference, each effect also "
         "adjusted for the donors' control score; significant rows re-tested leaving out each "
         "donor in turn; a set flagged for contamination when its summed counts meet the DE "
         "genes' rule (another type's or ambient RNA's share explains it)",
         _params(config, "signatures.library", "signatures.extra_sets", "signatures.min_genes",
                 "signatures.control_flag_pvalue", "signatures.control_flag_difference",
                 "comparison.low_power_max_replicates"),
         f"{CITATIONS['welch']}; {CITATIONS['bh']}"),
        ("covariates", "comparison.covariates in every donor-level model (DESeq2, composition, "
         "signatures, cycling): a categorical one dummy-coded, a numeric one (type: numeric) as "
         "one centred column, a slope costing one degree of freedom; a covariate constant among "
         "the donors, aliased with condition (a number with one value per condition) or "
         "leaving no residual degrees of freedom is dropped, the reason in the tables and the log",
         _params(config, "comparison.covariates"), ""),
        ("development axis", "projection of each cell onto the line from an external "
         "reference's adult (0) to its fetal (1) mean profile over the library's ontogeny genes, "
         "per cell type; each donor's mean with a t 95 % CI over its cells (cell sampling "
         "only); the condition difference of donor projections by Welch's t with its 95 % CI "
         "and BH across cell types, estimated only with the minimum donors a side; not "
         "estimable without a reference (an axis centred on this study's own reference donors "
         "would restate the signature tests)",
         _params(config, "signatures.development_reference", "signatures.development_min_donors",
                 "comparison.min_cells_per_replicate"), f"{CITATIONS['welch']}; {CITATIONS['bh']}"),
        ("cycling fraction", "S and G2/M scores of Tirosh et al.'s cell-cycle genes (scanpy's "
         "score_genes_cell_cycle method, expression-matched control genes); a cell is cycling when "
         "its larger score reaches cycling_min_score, not scanpy's >= 0, which called 34-40 % "
         "of the simulator's non-cycling cells cycling (their scores are noise around 0); each "
         "donor's fraction per cell type tested as composition is (propeller: transformed "
         "fractions, moderated t, 95 % CI, BH)",
         _params(config, "signatures.cycling_min_score", "signatures.min_genes",
                 "comparison.composition_transform", "comparison.min_cells_per_replicate",
                 "comparison.min_replicates_per_group"),
         f"{CITATIONS['tirosh']}; {CITATIONS['scanpy']}; {CITATIONS['propeller']}; "
         f"{CITATIONS['bh']}"),
        ("within-lineage compartments", "each subtype's share of its lineage's cells per "
         "donor (the panel's lineages; HSPC subsets where progenitors are present, naive / "
         "memory T ...) tested as composition is (propeller, 95 % CI, BH over the table); each "
         "lineage's signature scores compared crude and directly standardised to one subtype "
         "mix (each donor's per-subtype means weighted by the pooled mix of all donors, only "
         "subtypes with min_cells_per_replicate cells in every donor), both by the signature "
         "tests' donor-level rule; a crude difference that the adjusted one loses (not "
         "significant, or under half) is called explained by the compartment mix. Reason: cord "
         "T cells are mostly naive, so a lineage-level difference can be the mix, not a "
         "difference within any compartment",
         _params(config, "annotation.panel", "comparison.min_cells_per_replicate",
                 "comparison.min_replicates_per_group", "comparison.composition_transform",
                 "comparison.alpha"),
         f"{CITATIONS['standardisation']}; {CITATIONS['propeller']}; {CITATIONS['welch']}; "
         f"{CITATIONS['bh']}"),
        ("enrichment", "CAMERA with the inter-gene correlation estimated per set, on the "
         "donors' pseudobulk log-CPM (voom's); a ranking (AUC, no p-value) for cell-level DE",
         _params(config, "enrichment.min_set_size", "enrichment.max_set_size",
                 "enrichment.inter_gene_correlation"),
         f"{CITATIONS['camera']}; {CITATIONS['voom']}; {CITATIONS['bh']}"),
    ]  # fmt: skip
