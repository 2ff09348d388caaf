"""Deterministic simulator of a cord blood vs adult single-cell RNA-seq study with known truth."""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from cordatlas.errors import UserInputError
from cordatlas.io.writers import COUNT_FORMATS, write_counts

__all__ = [
    "ARTEFACTS",
    "CELL_TYPES",
    "SimulatedStudy",
    "build_gene_table",
    "main",
    "simulate_study",
    "write_demo",
]

log = logging.getLogger(__name__)

# ============================================================================================
# Biology: cell types, gene sets and expression levels (data, not analysis)
# ============================================================================================

#: Canonical cell-type names (wildcard-safe); later stages annotate with exactly these.
CELL_TYPES: tuple[str, ...] = (
    "HSC_MPP",
    "myeloid_progenitor",
    "erythroid_progenitor",
    "erythroid",
    "megakaryocyte",
    "CD14_monocyte",
    "CD16_monocyte",
    "cDC",
    "pDC",
    "B_naive",
    "B_memory",
    "CD4_naive",
    "CD4_memory",
    "Treg",
    "CD8_naive",
    "CD8_effector",
    "NK_CD56dim",
)

#: Values of truth_cells' ``artefact`` column.
ARTEFACTS: tuple[str, ...] = ("none", "damaged", "low_count", "doublet", "other_species")

#: Coarse lineage of each type: shared background programmes and shared filler-gene structure.
LINEAGE: dict[str, str] = {
    "HSC_MPP": "progenitor",
    "myeloid_progenitor": "progenitor",
    "erythroid_progenitor": "progenitor",
    "erythroid": "erythroid",
    "megakaryocyte": "megakaryocyte",
    "CD14_monocyte": "myeloid",
    "CD16_monocyte": "myeloid",
    "cDC": "myeloid",
    "pDC": "pdc",
    "B_naive": "B",
    "B_memory": "B",
    "CD4_naive": "T",
    "CD4_memory": "T",
    "Treg": "T",
    "CD8_naive": "T",
    "CD8_effector": "T",
    "NK_CD56dim": "NK",
}
_LINEAGES: tuple[str, ...] = tuple(dict.fromkeys(LINEAGE.values()))

#: Median UMIs per healthy cell (10x 3' v3-like); sd of log library size below.
LIBRARY_MEDIAN: dict[str, float] = {
    "HSC_MPP": 6000,
    "myeloid_progenitor": 7000,
    "erythroid_progenitor": 5500,
    "erythroid": 2500,
    "megakaryocyte": 1500,
    "CD14_monocyte": 5500,
    "CD16_monocyte": 5000,
    "cDC": 5000,
    "pDC": 4500,
    "B_naive": 3500,
    "B_memory": 3800,
    "CD4_naive": 3000,
    "CD4_memory": 3500,
    "Treg": 3500,
    "CD8_naive": 3000,
    "CD8_effector": 3800,
    "NK_CD56dim": 3500,
}
LIBRARY_LOG_SD = 0.35
#: Sample-level sequencing-depth variation (log sd).
SAMPLE_DEPTH_LOG_SD = 0.15

#: Share of a type's UMIs on ribosomal, mitochondrial, haemoglobin and housekeeping genes.
COMPONENTS: dict[str, tuple[float, float, float, float]] = {
    #                        ribo   mito   hb     hk
    "HSC_MPP": (0.30, 0.040, 0.002, 0.12),
    "myeloid_progenitor": (0.28, 0.045, 0.002, 0.12),
    "erythroid_progenitor": (0.25, 0.040, 0.060, 0.12),
    "erythroid": (0.08, 0.020, 0.550, 0.08),
    "megakaryocyte": (0.08, 0.050, 0.010, 0.15),
    "CD14_monocyte": (0.14, 0.050, 0.001, 0.18),
    "CD16_monocyte": (0.16, 0.050, 0.001, 0.18),
    "cDC": (0.18, 0.045, 0.001, 0.16),
    "pDC": (0.22, 0.040, 0.001, 0.14),
    "B_naive": (0.33, 0.035, 0.001, 0.16),
    "B_memory": (0.31, 0.035, 0.001, 0.16),
    "CD4_naive": (0.36, 0.035, 0.001, 0.15),
    "CD4_memory": (0.34, 0.035, 0.001, 0.15),
    "Treg": (0.34, 0.035, 0.001, 0.15),
    "CD8_naive": (0.36, 0.035, 0.001, 0.15),
    "CD8_effector": (0.32, 0.035, 0.001, 0.15),
    "NK_CD56dim": (0.25, 0.040, 0.001, 0.17),
}

#: Relative weights within the housekeeping component.
HOUSEKEEPING: dict[str, float] = {
    "MALAT1": 30, "TMSB4X": 25, "B2M": 20, "EEF1A1": 18, "ACTB": 12, "TPT1": 10, "FTL": 8,
    "FTH1": 8, "TMSB10": 8, "PTMA": 6, "MYL6": 6, "HLA-B": 6, "HLA-A": 4, "HLA-C": 4,
    "GAPDH": 4, "PFN1": 4, "CFL1": 3, "ACTG1": 3, "NEAT1": 3, "EIF1": 3, "UBC": 2, "UBB": 2,
    "H3-3B": 2, "SERF2": 2, "NACA": 2, "OAZ1": 2, "BTF3": 2, "HNRNPA1": 2, "NPM1": 2,
    "COX4I1": 1.5, "ARHGDIB": 2, "CORO1A": 2, "LAPTM5": 2, "PPIA": 2, "GABARAP": 1.5,
}  # fmt: skip
#: Lineage-specific multipliers of housekeeping weights (ferritin in myeloid cells etc.).
HOUSEKEEPING_LINEAGE: dict[str, dict[str, float]] = {
    "myeloid": {"FTL": 4.0, "FTH1": 3.0, "TMSB4X": 1.5},
    "erythroid": {"MALAT1": 0.3, "NEAT1": 0.3, "FTL": 0.5},
    "megakaryocyte": {"TMSB4X": 2.0, "B2M": 1.5},
}

#: The 13 mitochondrially encoded genes and their relative weights.
MITOCHONDRIAL: dict[str, float] = {
    "MT-CO1": 20, "MT-CO3": 15, "MT-ATP6": 14, "MT-CO2": 12, "MT-CYB": 10, "MT-ND4": 9,
    "MT-ND1": 6, "MT-ND2": 5, "MT-ND3": 4, "MT-ND5": 2, "MT-ND4L": 1.5, "MT-ATP8": 1,
    "MT-ND6": 0.5,
}  # fmt: skip

RIBOSOMAL: tuple[str, ...] = (
    "RPS2", "RPS3", "RPS3A", "RPS4X", "RPS5", "RPS6", "RPS7", "RPS8", "RPS9", "RPS10",
    "RPS11", "RPS12", "RPS13", "RPS14", "RPS15", "RPS15A", "RPS16", "RPS17", "RPS18",
    "RPS19", "RPS20", "RPS21", "RPS23", "RPS24", "RPS25", "RPS26", "RPS27", "RPS27A",
    "RPS28", "RPS29", "RPL3", "RPL4", "RPL5", "RPL6", "RPL7", "RPL7A", "RPL8", "RPL9",
    "RPL10", "RPL10A", "RPL11", "RPL12", "RPL13", "RPL13A", "RPL14", "RPL15", "RPL17",
    "RPL18", "RPL18A", "RPL19", "RPL21", "RPL22", "RPL23", "RPL23A", "RPL24", "RPL26",
    "RPL27", "RPL27A", "RPL28", "RPL29", "RPL30", "RPL31", "RPL32", "RPL34", "RPL35",
    "RPL35A", "RPL36", "RPL37", "RPL37A", "RPL38", "RPL39", "RPL41", "RPLP0", "RPLP1",
    "RPLP2",
)  # fmt: skip

#: Relative weights within the haemoglobin component (adult erythroid pattern; the cord
#: fetal-haemoglobin shift is planted as a condition effect).
HAEMOGLOBIN: dict[str, float] = {
    "HBB": 35, "HBA2": 25, "HBA1": 22, "HBD": 2, "HBM": 1, "HBQ1": 0.3, "HBG2": 1.0,
    "HBG1": 0.6, "HBZ": 0.05, "HBE1": 0.05,
}  # fmt: skip

#: Tirosh et al. 2016 cell-cycle genes (as distributed with scanpy's tutorials).
CELL_CYCLE_S: tuple[str, ...] = (
    "MCM5", "PCNA", "TYMS", "FEN1", "MCM2", "MCM4", "RRM1", "UNG", "GINS2", "MCM6", "CDCA7",
    "DTL", "PRIM1", "UHRF1", "MLF1IP", "HELLS", "RFC2", "RPA2", "NASP", "RAD51AP1", "GMNN",
    "WDR76", "SLBP", "CCNE2", "UBR7", "POLD3", "MSH2", "ATAD2", "RAD51", "RRM2", "CDC45",
    "CDC6", "EXO1", "TIPIN", "DSCC1", "BLM", "CASP8AP2", "USP1", "CLSPN", "POLA1", "CHAF1B",
    "BRIP1", "E2F8",
)  # fmt: skip
CELL_CYCLE_G2M: tuple[str, ...] = (
    "HMGB2", "CDK1", "NUSAP1", "UBE2C", "BIRC5", "TPX2", "TOP2A", "NDC80", "CKS2", "NUF2",
    "CKS1B", "MKI67", "TMPO", "CENPF", "TACC3", "FAM64A", "SMC4", "CCNB2", "CKAP2L", "CKAP2",
    "AURKB", "BUB1", "KIF11", "ANP32E", "TUBB4B", "GTSE1", "KIF20B", "HJURP", "CDCA3", "HN1",
    "CDC20", "TTK", "CDC25C", "KIF2C", "RANGAP1", "NCAPD2", "DLGAP5", "CDCA2", "CDCA8",
    "ECT2", "KIF23", "HMMR", "AURKA", "PSRC1", "ANLN", "LBR", "CKAP5", "CENPE", "CTCF",
    "NEK2", "G2E3", "GAS2L3", "CBX5", "CENPA",
)  # fmt: skip

#: Gene programmes later stages score, with each gene's default level (CP10k, all types).
PROGRAMMES: dict[str, dict[str, float]] = {
    "fetal_programme": {"LIN28B": 0.05, "HMGA2": 0.1, "IGF2BP3": 0.05, "IGF2BP1": 0.02},
    "hsc": {
        "HLF": 0.05, "AVP": 0.05, "CRHBP": 0.05, "CD34": 0.1, "PROM1": 0.05, "MECOM": 0.05,
        "NRIP1": 1.0, "MLLT3": 0.5, "SPINK2": 0.1,
    },
    "globin_switch": {"BCL11A": 0.5},
    "treg": {
        "FOXP3": 0.1, "IL2RA": 0.3, "CTLA4": 0.3, "IKZF2": 0.5, "TNFRSF18": 0.3, "CCR4": 0.5,
    },
    "regulatory": {
        "IL10": 0.05, "TGFB1": 5.0, "IDO1": 0.1, "CD274": 0.3, "LGALS1": 2.0, "LGALS9": 3.0,
        "HLA-G": 0.1, "ENTPD1": 0.3, "NT5E": 0.2,
    },
    "cytotoxicity": {
        "GZMA": 0.3, "GZMB": 0.2, "GZMH": 0.2, "PRF1": 0.3, "GNLY": 0.3, "NKG7": 1.0,
        "IFNG": 0.05, "KIR2DL1": 0.02, "KIR3DL1": 0.02, "KLRC1": 0.1,
    },
    "innate": {"S100A8": 3.0, "S100A9": 4.0, "CXCL8": 0.1},
    "repair": {"AREG": 0.2, "VEGFA": 1.0, "HGF": 0.05, "IGF1": 0.05, "FGF2": 0.05},
    "interferon": {
        "ISG15": 5.0, "IFI6": 3.0, "IFIT1": 0.5, "IFIT3": 1.5, "MX1": 2.0, "OAS1": 1.0,
        "IFI44L": 1.0,
    },
    "stress": {
        "JUN": 15, "JUNB": 30, "FOS": 20, "FOSB": 4, "NFKBIA": 15, "TNFAIP3": 5, "HSPA1A": 5,
        "HSPA1B": 4, "DUSP1": 20, "IER2": 10, "EGR1": 4, "ZFP36": 15,
    },
    "cell_cycle_s": dict.fromkeys(CELL_CYCLE_S, 0.6),
    "cell_cycle_g2m": {**dict.fromkeys(CELL_CYCLE_G2M, 0.6), "HMGB2": 5.0, "ANP32E": 2.5},
}  # fmt: skip

#: Lineage-level overrides of programme levels (CP10k).
LINEAGE_LEVELS: dict[str, dict[str, float]] = {
    "progenitor": {
        **dict.fromkeys(CELL_CYCLE_S, 1.5),
        **dict.fromkeys(CELL_CYCLE_G2M, 1.5),
        "HMGB2": 15.0,
        "ANP32E": 6.0,
        "LIN28B": 0.5,
        "HMGA2": 1.0,
        "IGF2BP3": 0.4,
        "IGF2BP1": 0.1,
    },
    "myeloid": {"FOS": 40, "NFKBIA": 30, "DUSP1": 35, "CXCL8": 3.0, "CD274": 1.0, "IL10": 0.3,
                "LGALS1": 30.0, "VEGFA": 2.0, "AREG": 1.0},
    "T": {"BCL11A": 0.5, "NKG7": 0.5},
    "NK": {"AREG": 0.5},
}  # fmt: skip

#: Marker genes and their level (CP10k) in each type; the highest-priority layer.
_T_CORE: dict[str, float] = {"CD3E": 30, "CD3D": 35, "CD2": 15, "CD247": 10}
_B_CORE: dict[str, float] = {
    "MS4A1": 40, "CD79A": 60, "CD79B": 30, "CD19": 8, "CD74": 300, "HLA-DRA": 120,
    "BANK1": 8, "CD22": 5,
}  # fmt: skip
MARKERS: dict[str, dict[str, float]] = {
    "HSC_MPP": {
        "CD34": 25, "PROM1": 6, "HLF": 5, "AVP": 15, "CRHBP": 8, "MECOM": 4, "SPINK2": 25,
        "MLLT3": 6, "NRIP1": 5, "MEIS1": 5, "HOPX": 6, "SOX4": 20, "CD164": 12, "CD74": 100,
        "HLA-DRA": 40, "BCL11A": 2,
    },
    "myeloid_progenitor": {
        "MPO": 80, "ELANE": 50, "AZU1": 40, "PRTN3": 50, "CTSG": 35, "MS4A3": 10, "CD34": 10,
        "SPINK2": 8, "SOX4": 12, "LYZ": 30, "CD74": 120, "HLA-DRA": 40, "SRGN": 40,
    },
    "erythroid_progenitor": {
        "GATA1": 8, "KLF1": 6, "TFRC": 20, "CA1": 30, "AHSP": 35, "CD34": 5, "MYC": 8,
        "SOX4": 8, "ALAS2": 10, "BCL11A": 2, "GYPA": 2,
    },
    "erythroid": {
        "ALAS2": 40, "GYPA": 12, "SLC4A1": 15, "CA1": 20, "AHSP": 25, "BCL11A": 8, "GATA1": 2,
        "KLF1": 2, "TFRC": 6,
    },
    "megakaryocyte": {
        "PF4": 250, "PPBP": 400, "ITGA2B": 12, "GP9": 15, "TUBB1": 20, "NRGN": 60, "GNG11": 40,
        "SPARC": 25,
    },
    "CD14_monocyte": {
        "CD14": 25, "LYZ": 400, "S100A8": 250, "S100A9": 350, "VCAN": 30, "FCN1": 50,
        "CST3": 120, "CSF1R": 3, "FCGR3A": 1, "HLA-DRA": 100, "CD74": 250, "TYROBP": 60,
        "FCER1G": 40, "AIF1": 40, "LST1": 15, "MS4A7": 3,
    },
    "CD16_monocyte": {
        "FCGR3A": 50, "MS4A7": 30, "CDKN1C": 25, "LST1": 40, "LYZ": 120, "S100A9": 40,
        "S100A8": 15, "CST3": 100, "FCN1": 15, "HLA-DRA": 150, "CD74": 300, "AIF1": 60,
        "TYROBP": 70, "FCER1G": 60, "CD14": 3, "LGALS1": 25, "CSF1R": 10,
    },
    "cDC": {
        "FCER1A": 25, "CD1C": 20, "CLEC10A": 15, "HLA-DRA": 250, "CD74": 500, "LYZ": 60,
        "CST3": 150, "AIF1": 20, "FCER1G": 20, "TYROBP": 30, "IDO1": 2,
    },
    "pDC": {
        "LILRA4": 30, "IL3RA": 12, "CLEC4C": 8, "TCF4": 30, "IRF7": 15, "GZMB": 30,
        "ITM2C": 40, "PLD4": 20, "JCHAIN": 20, "CD74": 300, "HLA-DRA": 60, "BCL11A": 8,
    },
    "B_naive": {
        **_B_CORE, "IGHD": 40, "TCL1A": 30, "IGHM": 120, "TCF4": 6, "BCL11A": 8, "SELL": 6,
    },
    "B_memory": {
        **_B_CORE, "CD27": 12, "AIM2": 8, "IGHM": 40, "IGHD": 4, "TCL1A": 2, "IGHA1": 30,
        "IGHG1": 20, "BCL11A": 6,
    },
    "CD4_naive": {
        **_T_CORE, "CD4": 8, "CCR7": 20, "SELL": 15, "LEF1": 15, "TCF7": 15, "IL7R": 6,
        "LDHB": 40,
    },
    "CD4_memory": {
        **_T_CORE, "CD4": 8, "IL7R": 25, "S100A4": 40, "ANXA1": 30, "IL32": 40, "CCR7": 5,
        "SELL": 4, "TCF7": 8, "LEF1": 3, "LGALS1": 10, "LDHB": 20, "CCR4": 2, "FOXP3": 0.3,
    },
    "Treg": {
        **_T_CORE, "CD4": 8, "FOXP3": 10, "IL2RA": 10, "CTLA4": 10, "IKZF2": 6, "TNFRSF18": 6,
        "CCR4": 5, "IL32": 30, "TIGIT": 6, "CCR7": 8, "SELL": 8, "LGALS1": 15, "ENTPD1": 2,
        "LDHB": 20,
    },
    "CD8_naive": {
        **_T_CORE, "CD8A": 15, "CD8B": 15, "CCR7": 20, "SELL": 15, "LEF1": 15, "TCF7": 12,
        "LDHB": 40,
    },
    "CD8_effector": {
        **_T_CORE, "CD8A": 15, "CD8B": 12, "GZMK": 20, "GZMH": 30, "CCL5": 100, "NKG7": 80,
        "GZMB": 25, "PRF1": 15, "GNLY": 60, "GZMA": 25, "IL32": 40, "CST7": 30, "S100A4": 30,
        "IFNG": 2, "KIR2DL1": 0.5, "KIR3DL1": 0.5, "KLRD1": 5,
    },
    "NK_CD56dim": {
        "GNLY": 200, "NKG7": 150, "KLRD1": 25, "KLRF1": 12, "PRF1": 30, "GZMB": 50,
        "FCGR3A": 20, "NCAM1": 4, "KLRC1": 5, "GZMA": 30, "CCL5": 40, "CST7": 30, "CD2": 8,
        "CD247": 15, "TYROBP": 60, "FCER1G": 30, "KIR2DL1": 3, "KIR3DL1": 3, "IFNG": 2,
        "LGALS1": 10,
    },
}  # fmt: skip
#: Level (CP10k) of a marker gene in a type that does not list it: low, as in real droplets.
MARKER_OFF_CP10K = 0.2

#: Fraction of cells cycling (half in S, half in G2/M) and the fold up of that phase's genes.
CYCLING_FRACTION: dict[str, float] = {
    "HSC_MPP": 0.15, "myeloid_progenitor": 0.35, "erythroid_progenitor": 0.40,
}  # fmt: skip
CYCLING_DEFAULT = 0.02
CYCLING_FOLD = 8.0

#: Mean cell-type proportions per condition (normalised to sum to one). Cord blood has more
#: stem/progenitor, erythroid (nucleated red cells) and naive T cells; adult blood more
#: memory/effector T, NK and CD16 monocytes.
COMPOSITION: dict[str, dict[str, float]] = {
    "case": {
        "HSC_MPP": 3.5, "myeloid_progenitor": 3.0, "erythroid_progenitor": 3.0, "erythroid": 5.0,
        "megakaryocyte": 2.0, "CD14_monocyte": 14.0, "CD16_monocyte": 2.0, "cDC": 2.0,
        "pDC": 2.0, "B_naive": 9.0, "B_memory": 2.0, "CD4_naive": 22.0, "CD4_memory": 3.0,
        "Treg": 3.0, "CD8_naive": 11.0, "CD8_effector": 2.0, "NK_CD56dim": 6.0,
    },
    # adult: peripheral blood with a demo-friendly share of circulating progenitors (real
    # adult blood has ~0.1 % CD34+ cells; a few per donor keep their comparison testable)
    "reference": {
        "HSC_MPP": 1.5, "myeloid_progenitor": 1.2, "erythroid_progenitor": 1.0,
        "erythroid": 1.0, "megakaryocyte": 2.0, "CD14_monocyte": 16.0, "CD16_monocyte": 5.0,
        "cDC": 2.0, "pDC": 1.5, "B_naive": 6.0, "B_memory": 5.0, "CD4_naive": 12.0,
        "CD4_memory": 17.0, "Treg": 3.0, "CD8_naive": 5.0, "CD8_effector": 11.0, "NK_CD56dim": 11.0,
    },
}  # fmt: skip
#: Dirichlet concentration of donor proportions around the condition mean.
DIRICHLET_CONCENTRATION = 200.0

#: Planted condition effects: (programme, cell types, {gene: log2FC case vs reference}).
PLANTED_EFFECTS: tuple[tuple[str, tuple[str, ...], dict[str, float]], ...] = (
    (
        "fetal_programme",
        ("HSC_MPP", "myeloid_progenitor", "erythroid_progenitor"),
        {"LIN28B": 2.5, "HMGA2": 2.0, "IGF2BP3": 3.0},
    ),
    ("fetal_haemoglobin", ("erythroid", "erythroid_progenitor"), {"HBG1": 3.0, "HBG2": 3.0}),
    ("fetal_haemoglobin", ("erythroid",), {"BCL11A": -1.5}),
    (
        "cytotoxicity",
        ("NK_CD56dim", "CD8_effector"),
        {"GZMB": -1.5, "PRF1": -1.5, "GNLY": -1.5, "NKG7": -1.5},
    ),
)
#: Random DE genes per cell type, their |log2FC| range and the minimum baseline level.
RANDOM_DE_PER_TYPE = 15
RANDOM_DE_LOG2FC = (1.0, 2.5)
RANDOM_DE_MIN_CP10K = 2.0

#: Donor x gene multiplicative effect (log sd): donors are the unit of variation.
DONOR_LOG_SD = 0.15
#: Gene-wise NB dispersion: log-normal around this median, clipped.
DISPERSION_MEDIAN = 0.2
DISPERSION_LOG_SD = 0.6

#: Artefact shapes.
DAMAGED_MITO_RANGE = (0.25, 0.80)
DAMAGED_TOTAL_RANGE = (0.2, 0.6)  # total UMIs relative to a healthy cell of the type
LOW_COUNT_RANGE = (30.0, 300.0)
DOUBLET_HETEROTYPIC = 0.9

#: Mixed-species (barnyard) files: mouse cells per human cell, mouse genes, cross-talk.
MOUSE_CELL_RATE = 0.05
N_MOUSE_GENES = 200
MOUSE_LIBRARY_MEDIAN = 3000.0
MOUSE_HUMAN_AMBIENT = 0.03
HUMAN_MOUSE_AMBIENT = 0.005
MOUSE_GENES_NAMED: tuple[str, ...] = (
    "mt-Co1", "mt-Co2", "mt-Co3", "mt-Atp6", "mt-Cytb", "mt-Nd1", "mt-Nd2", "mt-Nd4",
    "Malat1", "Actb", "B2m", "Tmsb4x", "Eef1a1", "Tpt1", "Fth1", "Ftl1", "Gapdh", "Ppia",
    "Pfn1", "Cfl1", "Actg1", "Myl6", "Rps2", "Rps3", "Rps5", "Rps8", "Rps12", "Rps19",
    "Rpl3", "Rpl4", "Rpl8", "Rpl13", "Rpl32", "Rplp0", "Rplp1", "Cd74", "H2-Aa", "H2-Ab1",
    "Lyz2", "S100a8", "S100a9", "Cd3e", "Cd79a", "Ms4a1", "Nkg7", "Ccl5", "Hba-a1", "Hbb-bs",
    "Ptprc", "Coro1a", "Laptm5", "Srgn", "Vim", "Lgals1", "Hmgb2", "Top2a", "Mki67", "Cd52",
    "Junb", "Fos",
)  # fmt: skip

#: Cells generated per block (fixed: part of what makes a seed reproducible).
_BLOCK_CELLS = 2048
#: Means below this are drawn Poisson (the gamma's extra variance, mu^2 * phi, is negligible).
_GAMMA_MIN_MEAN = 0.05

#: Sample-sheet columns about files and QC overrides, not sample metadata: not put in obs.
_NOT_CARRIED = frozenset(
    {
        "format", "path", "url", "sha256", "barcode_pattern", "orientation", "genome",
        "min_counts", "max_counts", "min_genes", "max_genes", "max_pct_counts_mt",
    }
)  # fmt: skip

_TRUTH_DE_COLUMNS = ["cell_type", "gene", "log2FC", "programme", "reference_cp10k"]


# ============================================================================================
# Public result type
# ============================================================================================
@dataclass
class SimulatedStudy:
    """A simulated study and its truth.

    Attributes
    ----------
    adata
        All barcodes (artefacts included), cells x genes, CSR int32 counts. obs: ``sample``,
        ``donor``, ``condition``, ``barcode``, ``cell_type``, ``artefact``, ``doublet_types``,
        ``phase`` and the sample sheet's other metadata columns (tissue, study, ...; not file
        locations or QC overrides); var: ``gene_ids``, ``category``.
    truth_cells
        One row per barcode, in the order of ``adata`` (grouped by sample, in sheet order):
        sample, donor, condition, barcode, cell_type, artefact, doublet_types ("A+B" for
        doublets, "" otherwise), phase.
    truth_de
        Planted differences: cell_type, gene, log2FC (condition vs reference, positive = higher
        in the condition, on the scale of expected expression at equal library size),
        programme, reference_cp10k (the reference group's expected level). Genes not listed
        are null in every type.
    truth_composition
        Per donor and type: donor, condition, cell_type, n_cells, proportion (among the
        donor's healthy singlets), donor_proportion (the donor's drawn expected proportion).
    truth_condition_composition
        condition, cell_type, expected_proportion (the Dirichlet mean).
    truth_genes
        gene, gene_ids, category, categories (all gene sets the gene belongs to).
    """

    adata: ad.AnnData
    truth_cells: pd.DataFrame
    truth_de: pd.DataFrame
    truth_composition: pd.DataFrame
    truth_condition_composition: pd.DataFrame
    truth_genes: pd.DataFrame


# ============================================================================================
# Gene universe and expression profiles
# ============================================================================================
def _named_gene_categories() -> dict[str, list[str]]:
    """Every named gene with all the categories it belongs to, in a fixed order."""
    categories: dict[str, list[str]] = {}

    def add(genes: Sequence[str], category: str) -> None:
        for gene in genes:
            categories.setdefault(gene, [])
            if category not in categories[gene]:
                categories[gene].append(category)

    add(list(MITOCHONDRIAL), "mitochondrial")
    add(RIBOSOMAL, "ribosomal")
    add(list(HAEMOGLOBIN), "haemoglobin")
    add(list(HOUSEKEEPING), "housekeeping")
    for cell_type in CELL_TYPES:
        add(list(MARKERS[cell_type]), "marker")
    for programme, levels in PROGRAMMES.items():
        add(list(levels), programme)
    return categories


def build_gene_table(*, n_genes: int = 2000) -> pd.DataFrame:
    """The simulated gene universe: real symbols the workflow scores, then synthetic fillers.

    Parameters
    ----------
    n_genes
        Total number of genes; the named genes come first, filler genes ``SIMG00001``, ...
        fill up to ``n_genes``.

    Returns
    -------
    pd.DataFrame
        Columns ``gene``, ``gene_ids`` (``ENSG9`` + 10-digit index, unique), ``category``
        (the first of: mitochondrial, ribosomal, haemoglobin, housekeeping, marker, a
        programme name, filler) and ``categories`` (all of them, ``;``-separated).
    """
    named = _named_gene_categories()
    minimum = len(named) + RANDOM_DE_PER_TYPE * 4
    if n_genes < minimum:
        raise UserInputError(
            f"n_genes={n_genes} is too small: the simulator needs at least {minimum} genes "
            f"({len(named)} named genes plus filler genes for random DE); raise n_genes."
        )
    genes = list(named)
    cats = [";".join(named[g]) for g in genes]
    n_filler = n_genes - len(genes)
    genes += [f"SIMG{i:05d}" for i in range(1, n_filler + 1)]
    cats += ["filler"] * n_filler
    return pd.DataFrame(
        {
            "gene": genes,
            "gene_ids": [f"ENSG9{i:010d}" for i in range(1, n_genes + 1)],
            "category": [c.split(";")[0] for c in cats],
            "categories": cats,
        }
    )


def _baseline_profiles(genes: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """Expected expression share of every gene in every type (types x genes, rows sum to 1)."""
    names = genes["gene"].tolist()
    index = {g: i for i, g in enumerate(names)}
    n_genes = len(names)
    filler = np.flatnonzero(genes["category"].to_numpy() == "filler")
    ribo = np.array([index[g] for g in RIBOSOMAL])
    mito = np.array([index[g] for g in MITOCHONDRIAL])
    hb = np.array([index[g] for g in HAEMOGLOBIN])
    hk = np.array([index[g] for g in HOUSEKEEPING])
    mito_w = np.array(list(MITOCHONDRIAL.values()), dtype=float)
    hb_w = np.array(list(HAEMOGLOBIN.values()), dtype=float)
    hk_base = np.array(list(HOUSEKEEPING.values()), dtype=float)
    ribo_base = np.exp(rng.normal(0.0, 0.4, ribo.size))

    # Filler genes: a heavy-tailed base level plus lineage- and type-level structure, so types
    # differ in hundreds of genes as real transcriptomes do (not only in their markers).
    filler_base = rng.normal(0.0, 1.2, filler.size)
    lineage_shift = {lin: rng.normal(0.0, 0.6, filler.size) for lin in _LINEAGES}
    fixed_levels: dict[str, float] = {}
    for levels in PROGRAMMES.values():
        fixed_levels.update(levels)
    marker_genes = [g for t in CELL_TYPES for g in MARKERS[t]]

    profiles = np.zeros((len(CELL_TYPES), n_genes))
    for t, cell_type in enumerate(CELL_TYPES):
        lineage = LINEAGE[cell_type]
        ribo_frac, mito_frac, hb_frac, hk_frac = COMPONENTS[cell_type]
        row = np.zeros(n_genes)
        row[ribo] = ribo_frac * _normalise(ribo_base * np.exp(rng.normal(0.0, 0.1, ribo.size)))
        row[mito] = mito_frac * _normalise(mito_w)
        row[hb] = hb_frac * _normalise(hb_w)
        hk_w = hk_base * np.exp(rng.normal(0.0, 0.25, hk.size))
        for gene, fold in HOUSEKEEPING_LINEAGE.get(lineage, {}).items():
            hk_w[list(HOUSEKEEPING).index(gene)] *= fold
        row[hk] = hk_frac * _normalise(hk_w)
        # named non-component genes, in CP10k: markers > lineage overrides > programme defaults
        levels = dict.fromkeys(marker_genes, MARKER_OFF_CP10K)
        levels.update(fixed_levels)
        levels.update(LINEAGE_LEVELS.get(lineage, {}))
        levels.update(MARKERS[cell_type])
        for gene, cp10k in levels.items():
            if gene in HAEMOGLOBIN or gene in HOUSEKEEPING:
                continue
            row[index[gene]] = cp10k / 1e4
        remainder = 1.0 - row.sum()
        if remainder < 0.15:
            raise AssertionError(f"profile of {cell_type} leaves {remainder:.2f} for fillers")
        type_shift = rng.normal(0.0, 0.35, filler.size)
        row[filler] = remainder * _normalise(
            np.exp(filler_base + lineage_shift[lineage] + type_shift)
        )
        profiles[t] = row
    return profiles


def _normalise(weights: np.ndarray) -> np.ndarray:
    return weights / weights.sum()


def _condition_log2fc(
    genes: pd.DataFrame, profiles: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, pd.DataFrame]:
    """Planted log2FC (types x genes) of the case condition vs the reference, and its table."""
    names = genes["gene"].tolist()
    index = {g: i for i, g in enumerate(names)}
    lfc = np.zeros(profiles.shape)
    rows: list[dict[str, object]] = []
    for programme, cell_types, effects in PLANTED_EFFECTS:
        for cell_type in cell_types:
            t = CELL_TYPES.index(cell_type)
            for gene, value in effects.items():
                lfc[t, index[gene]] = value
                rows.append(
                    {
                        "cell_type": cell_type,
                        "gene": gene,
                        "log2FC": value,
                        "programme": programme,
                        "reference_cp10k": profiles[t, index[gene]] * 1e4,
                    }
                )
    filler = np.flatnonzero(genes["category"].to_numpy() == "filler")
    for t, cell_type in enumerate(CELL_TYPES):
        eligible = filler[profiles[t, filler] * 1e4 >= RANDOM_DE_MIN_CP10K]
        n_de = min(RANDOM_DE_PER_TYPE, eligible.size)
        chosen = np.sort(rng.choice(eligible, size=n_de, replace=False))
        magnitude = rng.uniform(*RANDOM_DE_LOG2FC, size=n_de)
        sign = np.where(rng.random(n_de) < 0.5, -1.0, 1.0)
        for g, value in zip(chosen, np.round(sign * magnitude, 3), strict=True):
            lfc[t, g] = value
            rows.append(
                {
                    "cell_type": cell_type,
                    "gene": names[g],
                    "log2FC": float(value),
                    "programme": "random",
                    "reference_cp10k": profiles[t, g] * 1e4,
                }
            )
    table = pd.DataFrame(rows, columns=_TRUTH_DE_COLUMNS)
    order = {c: i for i, c in enumerate(CELL_TYPES)}
    table = table.sort_values(
        ["cell_type", "gene"], key=lambda s: s.map(order) if s.name == "cell_type" else s
    ).reset_index(drop=True)
    return lfc, table


# ============================================================================================
# Count sampling
# ============================================================================================
def _sample_counts(mean: np.ndarray, shape: np.ndarray, rng: np.random.Generator) -> sp.csr_matrix:
    """Draw gamma-Poisson (negative binomial) counts for a block of cells, returned as CSR.

    ``mean`` (cells x genes) is overwritten. ``shape`` is the gene-wise gamma shape
    (1 / dispersion); the gamma is drawn only where the mean makes it matter.
    """
    n_cells, n_genes = mean.shape
    flat = mean.reshape(-1)
    big = np.flatnonzero(flat > _GAMMA_MIN_MEAN)
    if big.size:
        gene_shape = shape[big % n_genes]
        flat[big] *= rng.standard_gamma(gene_shape) / gene_shape
    counts = rng.poisson(flat)
    hit = np.flatnonzero(counts)
    rows = hit // n_genes
    indptr = np.zeros(n_cells + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_cells), out=indptr[1:])
    return sp.csr_matrix(
        (counts[hit].astype(np.int32), (hit - rows * n_genes).astype(np.int32), indptr),
        shape=(n_cells, n_genes),
    )


def _random_barcodes(
    n: int, rng: np.random.Generator, *, exclude: frozenset[str] = frozenset()
) -> np.ndarray:
    """``n`` unique 16-bp ACGT barcodes with the ``-1`` GEM-group suffix, none in ``exclude``."""
    letters = np.frombuffer(b"ACGT", dtype=np.uint8)
    shifts = np.arange(30, -1, -2, dtype=np.uint64)
    seen = set(exclude)
    out: list[str] = []
    while len(out) < n:
        codes = rng.integers(0, 4**16, size=n - len(out), dtype=np.uint64)
        digits = ((codes[:, None] >> shifts) & np.uint64(3)).astype(np.intp)
        raw = np.ascontiguousarray(letters[digits]).view("S16").ravel()
        for barcode in np.char.add(raw.astype(str), "-1").tolist():
            if barcode not in seen:
                seen.add(barcode)
                out.append(barcode)
    return np.array(out, dtype=object)


# ============================================================================================
# Study simulation
# ============================================================================================
def _absent(value: object) -> bool:
    """Whether a sample-sheet cell is empty (None, NaN, pd.NA or blank text)."""
    if isinstance(value, str):
        return value.strip() == ""
    return value is None or bool(np.ndim(value) == 0 and pd.isna(value))


def _sample_table(samples: pd.DataFrame, contrast: Sequence[str]) -> pd.DataFrame:
    """Validate the sample sheet columns the simulator needs; return a clean copy."""
    table = samples.copy()
    if "sample" not in table.columns and table.index.name == "sample":
        table = table.reset_index()
    missing = [c for c in ("sample", "donor", "condition") if c not in table.columns]
    if missing:
        raise UserInputError(
            f"sample sheet lacks column(s) {missing}; the simulator needs sample, donor and "
            "condition."
        )
    if table.empty:
        raise UserInputError("sample sheet has no rows; add one row per sample.")
    table = table.reset_index(drop=True)
    for column in ("sample", "donor", "condition"):
        bad = table[column].map(_absent)
        if bad.any():
            raise UserInputError(
                f"sample sheet row {int(np.flatnonzero(bad)[0]) + 1}: column {column!r} is empty; "
                "fill it in."
            )
        table[column] = table[column].astype(str)
    duplicated = table["sample"][table["sample"].duplicated()].tolist()
    if duplicated:
        raise UserInputError(f"sample(s) {duplicated} appear twice; sample ids must be unique.")
    if len(contrast) != 2 or contrast[0] == contrast[1]:
        raise UserInputError(f"contrast must be two different conditions, got {contrast!r}.")
    unknown = table.loc[~table["condition"].isin(contrast), ["sample", "condition"]]
    if not unknown.empty:
        first = unknown.iloc[0]
        raise UserInputError(
            f"sample {first['sample']!r}: condition {first['condition']!r} is not one of the "
            f"contrast {tuple(contrast)}; fix the sample sheet or the contrast."
        )
    per_donor = table.groupby("donor", sort=False)["condition"].nunique()
    if (per_donor > 1).any():
        donor = per_donor.index[per_donor > 1][0]
        raise UserInputError(
            f"donor {donor!r} has samples in more than one condition; a donor belongs to one "
            "condition."
        )
    return table


def _condition_means(contrast: Sequence[str], *, condition_effect: bool) -> np.ndarray:
    """Expected proportions, conditions (in contrast order) x types."""
    case = _normalise(np.array([COMPOSITION["case"][t] for t in CELL_TYPES]))
    reference = _normalise(np.array([COMPOSITION["reference"][t] for t in CELL_TYPES]))
    if not condition_effect:
        pooled = _normalise(case + reference)
        return np.vstack([pooled, pooled])
    return np.vstack([case, reference])


def simulate_study(
    samples: pd.DataFrame,
    *,
    n_cells_per_sample: int = 750,
    n_genes: int = 2000,
    seed: int = 0,
    condition_effect: bool = True,
    damaged_rate: float = 0.05,
    low_count_rate: float = 0.05,
    doublet_rate: float = 0.06,
    contrast: Sequence[str] = ("cord_blood", "adult"),
    threads: int = 1,
) -> SimulatedStudy:
    """Simulate a cord blood vs adult study with planted, known differences.

    Counts are negative binomial (gamma-Poisson): per cell type a baseline expression profile
    built from real marker genes and gene programmes, times a per-donor x gene log-normal
    effect (sd 0.15), times the planted condition effect, times a log-normal library size
    (type-specific median, sample-level depth factor); gene-wise dispersion. Progenitors cycle
    (S or G2/M genes up). Each sample also holds damaged cells (mitochondrial fraction
    25-80 %), low-count ambient barcodes (30-300 UMI) and doublets (two cells summed, mostly
    of different types) at the given rates.

    Parameters
    ----------
    samples
        At least ``sample``, ``donor``, ``condition`` (values from ``contrast``; ``sample`` may
        be the index). Other metadata columns (tissue, study, sex, ...) are carried into
        ``adata.obs``; file-location and QC-override columns are not.
    n_cells_per_sample
        Barcodes per sample, artefacts included.
    n_genes
        Genes simulated (named genes first, then synthetic fillers).
    seed
        Seed of every random draw; the same seed gives identical counts and truth.
    condition_effect
        False plants no differential expression and gives both conditions the same expected
        composition (a null study for calibration).
    damaged_rate, low_count_rate, doublet_rate
        Fraction of each sample's barcodes that are damaged cells, low-count barcodes and
        doublets (rounded to whole barcodes).
    contrast
        (condition, reference): planted effects are of the first versus the second.
    threads
        Threads drawing counts (blocks of cells have their own generators, so the result is
        identical for any number of threads).

    Returns
    -------
    SimulatedStudy
        The counts and every truth table.
    """
    table = _sample_table(samples, contrast)
    rates = {"damaged": damaged_rate, "low_count": low_count_rate, "doublet": doublet_rate}
    for name, rate in rates.items():
        if not 0.0 <= rate < 1.0:
            raise UserInputError(f"{name}_rate must lie in [0, 1), got {rate!r}.")
    n_artefacts = {k: int(round(v * n_cells_per_sample)) for k, v in rates.items()}
    n_healthy = n_cells_per_sample - sum(n_artefacts.values())
    if n_cells_per_sample < 1 or n_healthy < 1:
        raise UserInputError(
            f"n_cells_per_sample={n_cells_per_sample} with artefact rates {rates} leaves no "
            "healthy cells; raise n_cells_per_sample or lower the rates."
        )

    streams = np.random.SeedSequence(seed).spawn(7)
    rng_profile, rng_de, rng_donor, rng_comp, rng_cells, rng_barcode = (
        np.random.default_rng(s) for s in streams[:6]
    )
    count_root = streams[6]

    genes = build_gene_table(n_genes=n_genes)
    gene_names = genes["gene"].tolist()
    profiles = _baseline_profiles(genes, rng_profile)
    shape = 1.0 / np.clip(
        DISPERSION_MEDIAN * np.exp(rng_profile.normal(0.0, DISPERSION_LOG_SD, n_genes)),
        0.02,
        2.0,
    )
    lfc, truth_de = _condition_log2fc(genes, profiles, rng_de)
    if not condition_effect:
        lfc[:] = 0.0
        truth_de = truth_de.iloc[0:0].copy()

    donors = list(dict.fromkeys(table["donor"]))
    donor_condition = dict(zip(table["donor"], table["condition"], strict=True))
    n_types = len(CELL_TYPES)
    means = _condition_means(contrast, condition_effect=condition_effect)

    # per donor: expected proportions and expression (+ an ambient profile: the UMI-weighted
    # mix of the donor's cells, what lysed cells leave in the droplet soup)
    donor_props = np.zeros((len(donors), n_types))
    mu = np.zeros((len(donors), n_types + 1, n_genes))
    lib_median = np.array([LIBRARY_MEDIAN[t] for t in CELL_TYPES])
    for d, donor in enumerate(donors):
        c = list(contrast).index(donor_condition[donor])
        donor_props[d] = rng_comp.dirichlet(DIRICHLET_CONCENTRATION * means[c])
        effect = np.exp(rng_donor.normal(0.0, DONOR_LOG_SD, n_genes))
        expression = profiles * effect
        if c == 0:
            expression = expression * np.exp2(lfc)
        mu[d, :n_types] = expression
        umi = donor_props[d] * lib_median
        mu[d, n_types] = _normalise(umi @ (expression / expression.sum(1, keepdims=True)))

    # ---- every barcode: kind, cell type(s), library, phase, damage ------------------------
    cycling = np.array([CYCLING_FRACTION.get(t, CYCLING_DEFAULT) for t in CELL_TYPES])
    mito_idx = np.flatnonzero(genes["category"].to_numpy() == "mitochondrial")
    mito_share = profiles[:, mito_idx].sum(1)
    s_idx = np.array([gene_names.index(g) for g in CELL_CYCLE_S])
    g2m_idx = np.array([gene_names.index(g) for g in CELL_CYCLE_G2M])

    out_sample: list[np.ndarray] = []
    out_kind: list[np.ndarray] = []
    out_type_a: list[np.ndarray] = []
    out_type_b: list[np.ndarray] = []
    for s, row in table.iterrows():
        d = donors.index(row["donor"])
        props = donor_props[d]
        kinds = np.repeat(
            np.array(["none", "damaged", "low_count", "doublet"]),
            [n_healthy, n_artefacts["damaged"], n_artefacts["low_count"], n_artefacts["doublet"]],
        )
        type_a = np.full(n_cells_per_sample, -1)
        type_b = np.full(n_cells_per_sample, -1)
        singlet = (kinds == "none") | (kinds == "damaged")
        type_a[singlet] = rng_cells.choice(n_types, size=int(singlet.sum()), p=props)
        doublet = np.flatnonzero(kinds == "doublet")
        type_a[doublet] = rng_cells.choice(n_types, size=doublet.size, p=props)
        for i in doublet:
            if rng_cells.random() < DOUBLET_HETEROTYPIC:
                other = props.copy()
                other[type_a[i]] = 0.0
                type_b[i] = rng_cells.choice(n_types, p=_normalise(other))
            else:
                type_b[i] = type_a[i]
        order = rng_cells.permutation(n_cells_per_sample)
        out_sample.append(np.full(n_cells_per_sample, s))
        out_kind.append(kinds[order])
        out_type_a.append(type_a[order])
        out_type_b.append(type_b[order])
    cell_sample = np.concatenate(out_sample)
    kind = np.concatenate(out_kind)
    type_a = np.concatenate(out_type_a)
    type_b = np.concatenate(out_type_b)
    n_cells = cell_sample.size
    sample_donor = np.array([donors.index(x) for x in table["donor"]])
    cell_donor = sample_donor[cell_sample]
    sample_depth = np.exp(rng_cells.normal(0.0, SAMPLE_DEPTH_LOG_SD, len(table)))

    # components: one per barcode, a second for doublets
    second = np.flatnonzero(kind == "doublet")
    comp_owner = np.concatenate([np.arange(n_cells), second])
    comp_type = np.concatenate([type_a, type_b[second]])
    low = np.flatnonzero(kind == "low_count")
    comp_profile = cell_donor[comp_owner] * (n_types + 1) + comp_type
    comp_profile[low] = cell_donor[low] * (n_types + 1) + n_types  # ambient
    n_comp = comp_owner.size
    safe_type = np.maximum(comp_type, 0)
    comp_library = (
        lib_median[safe_type]
        * np.exp(rng_cells.normal(0.0, LIBRARY_LOG_SD, n_comp))
        * sample_depth[cell_sample[comp_owner]]
    )
    comp_library[low] = np.exp(rng_cells.uniform(*np.log(LOW_COUNT_RANGE), size=low.size))
    cycle_draw = rng_cells.random(n_comp)
    phase = np.zeros(n_comp, dtype=np.int8)  # 0 G1, 1 S, 2 G2M
    is_cycling = cycle_draw < cycling[safe_type]
    phase[is_cycling] = np.where(cycle_draw[is_cycling] < cycling[safe_type][is_cycling] / 2, 1, 2)
    phase[low] = 0
    damaged = np.flatnonzero(kind == "damaged")
    keep = np.ones(n_comp)
    mito_fold = np.ones(n_comp)
    # a damaged cell lost cytoplasmic RNA but kept its mitochondria: its total falls to a
    # fraction `total` of a healthy cell's while the mitochondrial share rises to `target`
    target = rng_cells.uniform(*DAMAGED_MITO_RANGE, size=damaged.size)
    total = rng_cells.uniform(*DAMAGED_TOTAL_RANGE, size=damaged.size)
    f0 = mito_share[comp_type[damaged]]
    keep[damaged] = total * (1 - target) / (1 - f0)
    mito_fold[damaged] = total * target / f0

    # ---- counts, block by block of output barcodes -----------------------------------------
    mu_flat = mu.reshape(-1, n_genes)
    comp_order = np.argsort(comp_owner, kind="stable")
    comp_start = np.searchsorted(comp_owner[comp_order], np.arange(n_cells + 1))
    n_blocks = max(1, math.ceil(n_cells / _BLOCK_CELLS))
    block_seeds = count_root.spawn(n_blocks)

    def draw_block(b: int) -> sp.csr_matrix:
        # each block has its own generator: the result does not depend on `threads`
        lo_cell, hi_cell = b * _BLOCK_CELLS, min(n_cells, (b + 1) * _BLOCK_CELLS)
        comps = comp_order[comp_start[lo_cell] : comp_start[hi_cell]]
        mean = mu_flat[comp_profile[comps]] * comp_library[comps, None]
        for ph, idx in ((1, s_idx), (2, g2m_idx)):
            rows = np.flatnonzero(phase[comps] == ph)
            if rows.size:
                mean[np.ix_(rows, idx)] *= CYCLING_FOLD
        rows = np.flatnonzero(keep[comps] != 1.0)
        if rows.size:
            mean[rows] *= keep[comps][rows, None]
            mean[np.ix_(rows, mito_idx)] *= (mito_fold[comps] / keep[comps])[rows, None]
        counts = _sample_counts(mean, shape, np.random.default_rng(block_seeds[b]))
        del mean
        if comps.size == hi_cell - lo_cell:  # no doublet in this block
            return counts
        owner = comp_owner[comps] - lo_cell
        combine = sp.csr_matrix(
            (np.ones(comps.size, dtype=np.int32), (owner, np.arange(comps.size))),
            shape=(hi_cell - lo_cell, comps.size),
        )
        block = (combine @ counts).tocsr()
        block.sort_indices()
        return block

    if threads > 1 and n_blocks > 1:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            blocks = list(pool.map(draw_block, range(n_blocks)))
    else:
        blocks = [draw_block(b) for b in range(n_blocks)]
    indptr = np.zeros(n_cells + 1, dtype=np.int64)
    np.cumsum(np.concatenate([np.diff(blk.indptr) for blk in blocks]), out=indptr[1:])
    data = np.concatenate([blk.data.astype(np.int32, copy=False) for blk in blocks])
    indices = np.concatenate([blk.indices.astype(np.int32, copy=False) for blk in blocks])
    del blocks
    x = sp.csr_matrix((data, indices, indptr), shape=(n_cells, n_genes))

    # ---- annotations and truth --------------------------------------------------------------
    barcodes = np.empty(n_cells, dtype=object)
    for s in range(len(table)):
        where = np.flatnonzero(cell_sample == s)
        barcodes[where] = _random_barcodes(where.size, rng_barcode)
    type_names = np.array([*CELL_TYPES, "ambient"], dtype=object)
    cell_type = type_names[np.where(kind == "low_count", n_types, np.maximum(type_a, 0))]
    cell_type[kind == "doublet"] = "doublet"
    doublet_types = np.full(n_cells, "", dtype=object)
    for i in second:
        pair = sorted((type_a[i], type_b[i]))
        doublet_types[i] = f"{CELL_TYPES[pair[0]]}+{CELL_TYPES[pair[1]]}"
    phase_names = np.array(["G1", "S", "G2M"], dtype=object)
    cell_phase = phase_names[phase[:n_cells]]
    cell_phase[(kind == "low_count") | (kind == "doublet")] = "none"

    sample_names = table["sample"].to_numpy(dtype=object)
    truth_cells = pd.DataFrame(
        {
            "sample": sample_names[cell_sample],
            "donor": table["donor"].to_numpy(dtype=object)[cell_sample],
            "condition": table["condition"].to_numpy(dtype=object)[cell_sample],
            "barcode": barcodes,
            "cell_type": cell_type,
            "artefact": kind.astype(object),
            "doublet_types": doublet_types,
            "phase": cell_phase,
        }
    )
    obs = truth_cells.copy()
    for column in table.columns:
        if column in obs.columns or column in _NOT_CARRIED:
            continue
        values = table[column]
        if values.map(_absent).all():
            continue
        obs[column] = values.map(lambda v: "" if _absent(v) else str(v)).to_numpy()[cell_sample]
    for column in obs.columns:
        if column != "barcode":
            obs[column] = pd.Categorical(obs[column])
    obs.index = pd.Index(
        [f"{sname}_{bc}" for sname, bc in zip(truth_cells["sample"], barcodes, strict=True)]
    )
    var = genes.set_index("gene")[["gene_ids", "category"]].copy()
    var.index.name = None
    adata = ad.AnnData(X=x, obs=obs, var=var)
    adata.uns["simulation"] = {
        "seed": int(seed),
        "n_cells_per_sample": int(n_cells_per_sample),
        "n_genes": int(n_genes),
        "condition_effect": bool(condition_effect),
        "damaged_rate": float(damaged_rate),
        "low_count_rate": float(low_count_rate),
        "doublet_rate": float(doublet_rate),
        "contrast": list(contrast),
    }

    truth_composition = _composition_table(truth_cells, donors, donor_condition, donor_props)
    truth_condition_composition = pd.DataFrame(
        [
            {"condition": cond, "cell_type": t, "expected_proportion": float(means[c, i])}
            for c, cond in enumerate(contrast)
            for i, t in enumerate(CELL_TYPES)
        ]
    )
    return SimulatedStudy(
        adata=adata,
        truth_cells=truth_cells,
        truth_de=truth_de.reset_index(drop=True),
        truth_composition=truth_composition,
        truth_condition_composition=truth_condition_composition,
        truth_genes=genes[["gene", "gene_ids", "category", "categories"]].copy(),
    )


def _composition_table(
    truth_cells: pd.DataFrame,
    donors: list[str],
    donor_condition: Mapping[str, str],
    donor_props: np.ndarray,
) -> pd.DataFrame:
    healthy = truth_cells[truth_cells["artefact"] == "none"]
    counts = (
        pd.crosstab(healthy["donor"], healthy["cell_type"])
        .reindex(index=donors, columns=list(CELL_TYPES), fill_value=0)
        .to_numpy()
    )
    rows = []
    for d, donor in enumerate(donors):
        total = max(int(counts[d].sum()), 1)
        for t, cell_type in enumerate(CELL_TYPES):
            rows.append(
                {
                    "donor": donor,
                    "condition": donor_condition[donor],
                    "cell_type": cell_type,
                    "n_cells": int(counts[d, t]),
                    "proportion": counts[d, t] / total,
                    "donor_proportion": float(donor_props[d, t]),
                }
            )
    return pd.DataFrame(rows)


# ============================================================================================
# Writing the demo: every sample in its own format, pooled files, a mixed-species file
# ============================================================================================
def infer_format(path: str) -> str:
    """The format a demo path is written in when the sample sheet says `auto` (from its name)."""
    name = path.lower().rstrip("/")
    if name.endswith(".h5ad"):
        return "h5ad"
    if name.endswith(".h5"):
        return "10x_h5"
    if name.endswith(".loom"):
        return "loom"
    if re.search(r"\.(csv|tsv|txt)(\.gz)?$", name):
        return "delimited"
    if "." not in Path(name).name:
        return "10x_mtx"
    raise UserInputError(
        f"cannot infer the format of {path!r}; set the sample sheet's `format` to one of "
        f"{', '.join(COUNT_FORMATS)}."
    )


def _optional(row: pd.Series, column: str) -> str | None:
    if column not in row.index or _absent(row[column]):
        return None
    return str(row[column])


def _is_mixed_species(fmt: str, path: str) -> bool:
    return fmt == "delimited" and path.lower().endswith(".csv.gz")


def _mouse_genes() -> list[str]:
    named = [f"MOUSE_{g}" for g in MOUSE_GENES_NAMED]
    n_fill = max(0, N_MOUSE_GENES - len(named))
    return named + [f"MOUSE_Gm{10001 + i}" for i in range(n_fill)]


def _mouse_profile(n_mouse: int, rng: np.random.Generator) -> np.ndarray:
    weights = np.exp(rng.normal(0.0, 1.2, n_mouse))
    weights[: len(MOUSE_GENES_NAMED)] *= 8.0  # real symbols are the abundant transcripts
    return _normalise(weights)


def write_demo(
    samples: pd.DataFrame,
    outdir: str | os.PathLike[str] | None = None,
    *,
    truth_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    n_cells_per_sample: int = 750,
    n_genes: int = 2000,
    condition_effect: bool = True,
    damaged_rate: float = 0.05,
    low_count_rate: float = 0.05,
    doublet_rate: float = 0.06,
    contrast: Sequence[str] = ("cord_blood", "adult"),
    threads: int = 1,
) -> SimulatedStudy:
    """Simulate a study (:func:`simulate_study`) and write every sample as the sheet says.

    Conventions (they exercise every reader the workflow has):

    - Samples of the first ``contrast`` condition (cord blood) are written in Cell Ranger v3
      layouts, the others (adult) in v2 layouts (``10x_h5`` and ``10x_mtx``).
    - ``delimited`` paths ending ``.csv.gz`` are written genes x cells (GEO style) as a
      mixed-species (barnyard) file, as GEO GSE100866: every simulated gene is prefixed
      ``HUMAN_``, 200 ``MOUSE_`` genes are added (``MOUSE_Actb``, ``MOUSE_mt-Co1``, ...), human
      cells carry 0.5 % mouse ambient counts, and 5 % extra mouse cells (97 % of counts on
      ``MOUSE_`` genes) are recorded in truth_cells with cell_type ``mouse`` and artefact
      ``other_species``. Other delimited paths (``.tsv``, ``.tsv.gz``, ``.csv``) are written
      cells x genes without prefixes. A non-empty ``orientation`` column overrides this.
    - Rows sharing one ``path`` are pooled into ONE file (as the Census of Immune Cells pools
      donors); their barcodes are prefixed ``{sample}-`` and each row's ``barcode_pattern``
      (a regex applied with ``re.search``) must match all its own barcodes and none of the
      other rows'. A pooled file's layout version follows its first row's condition.
    - truth_cells' ``barcode`` (and ``study.adata.obs['barcode']``) is the barcode exactly
      as written in the file. ``study.adata`` holds human genes only; mouse cells appear in it
      with their (ambient) human counts.

    Parameters
    ----------
    samples
        The workflow's sample sheet: ``sample`` (column or index), ``donor``, ``condition``,
        ``format`` (``10x_h5``, ``10x_mtx``, ``h5ad``, ``loom``, ``delimited`` or ``auto``),
        ``path``, optional ``barcode_pattern``, ``orientation``, ``genome``. Empty cells and
        NA count as absent.
    outdir
        Directory that relative paths are resolved against; None resolves them against the
        working directory.
    truth_dir
        Directory for ``truth_cells.tsv``, ``truth_de.tsv``, ``truth_composition.tsv``,
        ``truth_condition_composition.tsv`` and ``truth_genes.tsv``; None writes none.
    seed, n_cells_per_sample, n_genes, condition_effect, damaged_rate, low_count_rate, doublet_rate, contrast, threads
        As in :func:`simulate_study`.

    Returns
    -------
    SimulatedStudy
        The study, with barcodes as written and mouse cells appended.

    Raises
    ------
    UserInputError
        A row without path, an unknown format, rows pooled in one path with different
        formats, a pooled row without ``barcode_pattern``, an invalid pattern, or a pattern
        that misses its own barcodes or matches another row's.
    """
    table = _sample_table(samples, contrast)
    for column in ("format", "path"):
        if column not in table.columns:
            raise UserInputError(f"sample sheet lacks column {column!r}; write_demo needs it.")
    files: dict[str, list[int]] = {}
    formats: dict[str, str] = {}
    for r, row in table.iterrows():
        path = _optional(row, "path")
        if path is None:
            raise UserInputError(
                f"sample {row['sample']!r}: column 'path' is empty; the simulator writes each "
                "sample at its path."
            )
        fmt = _optional(row, "format") or "auto"
        if fmt == "auto":
            fmt = infer_format(path)
        if fmt not in COUNT_FORMATS:
            raise UserInputError(
                f"sample {row['sample']!r}: format {fmt!r} is not one of "
                f"{', '.join(COUNT_FORMATS)}, auto."
            )
        if path in formats and formats[path] != fmt:
            raise UserInputError(
                f"sample {row['sample']!r}: path {path!r} is shared with another row in format "
                f"{formats[path]!r} but this row says {fmt!r}; pooled rows need one format."
            )
        formats[path] = fmt
        files.setdefault(path, []).append(int(r))
    patterns: dict[int, re.Pattern[str] | None] = {}
    for path, rows in files.items():
        for r in rows:
            text = _optional(table.loc[r], "barcode_pattern")
            sample = table.at[r, "sample"]
            if text is None and len(rows) > 1:
                raise UserInputError(
                    f"sample {sample!r}: path {path!r} pools {len(rows)} samples, so column "
                    f"'barcode_pattern' must select this sample's barcodes (e.g. '^{sample}-')."
                )
            try:
                patterns[r] = re.compile(text) if text is not None else None
            except re.error as err:
                raise UserInputError(
                    f"sample {sample!r}: barcode_pattern {text!r} is not a valid regular "
                    f"expression ({err}); fix it in the sample sheet."
                ) from None

    study = simulate_study(
        table,
        n_cells_per_sample=n_cells_per_sample,
        n_genes=n_genes,
        seed=seed,
        condition_effect=condition_effect,
        damaged_rate=damaged_rate,
        low_count_rate=low_count_rate,
        doublet_rate=doublet_rate,
        contrast=contrast,
        threads=threads,
    )
    adata = study.adata
    truth = study.truth_cells
    human_genes = adata.var_names.tolist()
    gene_ids = adata.var["gene_ids"].astype(str).tolist()
    mouse_genes = _mouse_genes()
    mouse_profile = _mouse_profile(
        len(mouse_genes), np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))
    )
    poisson_like = np.full(len(human_genes) + len(mouse_genes), 1e6)
    cell_rows = {s: np.flatnonzero(truth["sample"].to_numpy() == s) for s in table["sample"]}
    written = truth["barcode"].to_numpy(dtype=object).copy()
    mouse_blocks: list[tuple[int, np.ndarray, sp.csr_matrix]] = []
    base = Path(outdir) if outdir is not None else None
    any_mixed = False

    for path, rows in files.items():
        fmt = formats[path]
        pooled = len(rows) > 1
        mixed = _is_mixed_species(fmt, path)
        any_mixed |= mixed
        blocks: list[sp.csr_matrix] = []
        block_barcodes: list[np.ndarray] = []
        barcodes_by_row: dict[int, list[str]] = {}
        for r in rows:
            sample = table.at[r, "sample"]
            sel = cell_rows[sample]
            barcodes = truth["barcode"].to_numpy(dtype=object)[sel]
            if pooled:
                barcodes = np.array([f"{sample}-{b}" for b in barcodes], dtype=object)
            written[sel] = barcodes
            barcodes_by_row[r] = [str(b) for b in barcodes]
            human = adata.X[sel]
            if not mixed:
                blocks.append(human)
                block_barcodes.append(barcodes)
                continue
            rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2, r)))
            totals = np.asarray(human.sum(axis=1)).ravel()
            cross = _sample_counts(
                (totals * HUMAN_MOUSE_AMBIENT)[:, None] * mouse_profile[None, :],
                poisson_like[: len(mouse_genes)],
                rng,
            )
            blocks.append(sp.hstack([human, cross], format="csr"))
            block_barcodes.append(barcodes)
            n_mouse = int(round(MOUSE_CELL_RATE * sel.size))
            if n_mouse:
                healthy = sel[truth["artefact"].to_numpy()[sel] == "none"]
                ambient = _normalise(np.asarray(adata.X[healthy].sum(axis=0)).ravel() + 1e-3)
                library = MOUSE_LIBRARY_MEDIAN * np.exp(rng.normal(0.0, 0.4, n_mouse))
                profile = np.concatenate(
                    [MOUSE_HUMAN_AMBIENT * ambient, (1 - MOUSE_HUMAN_AMBIENT) * mouse_profile]
                )
                mouse = _sample_counts(library[:, None] * profile[None, :], poisson_like, rng)
                mouse_bc = _random_barcodes(
                    n_mouse, rng, exclude=frozenset(truth["barcode"].to_numpy()[sel])
                )
                if pooled:
                    mouse_bc = np.array([f"{sample}-{b}" for b in mouse_bc], dtype=object)
                blocks.append(mouse)
                block_barcodes.append(mouse_bc)
                barcodes_by_row[r] += [str(b) for b in mouse_bc]
                mouse_blocks.append((r, mouse_bc, mouse[:, : len(human_genes)].tocsr()))

        _check_patterns(table, barcodes_by_row, patterns, path)
        first = table.loc[rows[0]]
        version = 3 if first["condition"] == contrast[0] else 2
        orientation = _optional(first, "orientation")
        if orientation not in ("genes_x_cells", "cells_x_genes"):
            orientation = "genes_x_cells" if mixed else "cells_x_genes"
        genome = _optional(first, "genome") or "GRCh38"
        var_names = [f"HUMAN_{g}" for g in human_genes] if mixed else list(human_genes)
        ids = list(gene_ids)
        if mixed:
            var_names += mouse_genes
            ids += [f"ENSMUSG9{i:09d}" for i in range(1, len(mouse_genes) + 1)]
        out = ad.AnnData(
            X=sp.vstack(blocks, format="csr"),
            obs=pd.DataFrame(index=pd.Index(np.concatenate(block_barcodes).astype(str))),
            var=pd.DataFrame({"gene_ids": ids}, index=pd.Index(var_names)),
        )
        target = Path(path)
        if base is not None and not target.is_absolute():
            target = base / target
        write_counts(
            out, target, format=fmt, version=version, orientation=orientation, genome=genome
        )
        log.info("wrote %s (%s, %d barcodes)", target, fmt, out.n_obs)

    study = _with_written_barcodes(study, written, table, mouse_blocks)
    if any_mixed:
        mouse_table = pd.DataFrame(
            {
                "gene": mouse_genes,
                "gene_ids": [f"ENSMUSG9{i:09d}" for i in range(1, len(mouse_genes) + 1)],
                "category": "mouse_spike_in",
                "categories": "mouse_spike_in",
            }
        )
        study.truth_genes = pd.concat([study.truth_genes, mouse_table], ignore_index=True)
    if truth_dir is not None:
        write_truth(study, truth_dir)
    return study


def _check_patterns(
    table: pd.DataFrame,
    barcodes_by_row: Mapping[int, list[str]],
    patterns: Mapping[int, re.Pattern[str] | None],
    path: str,
) -> None:
    """Each row's pattern must select exactly its own barcodes within the file."""
    for r, own in barcodes_by_row.items():
        pattern = patterns[r]
        if pattern is None:
            continue
        sample = table.at[r, "sample"]
        missed = [b for b in own if not pattern.search(b)]
        if missed:
            raise UserInputError(
                f"sample {sample!r}: barcode_pattern {pattern.pattern!r} does not match its own "
                f"barcode {missed[0]!r} in {path!r} ({len(missed)} missed); pooled barcodes "
                f"are written as '{sample}-<barcode>'."
            )
        for other, theirs in barcodes_by_row.items():
            if other == r:
                continue
            stolen = [b for b in theirs if pattern.search(b)]
            if stolen:
                raise UserInputError(
                    f"sample {sample!r}: barcode_pattern {pattern.pattern!r} also matches "
                    f"barcode {stolen[0]!r} of sample {table.at[other, 'sample']!r} in "
                    f"{path!r}; make the pattern specific (e.g. '^{sample}-')."
                )


def _with_written_barcodes(
    study: SimulatedStudy,
    written: np.ndarray,
    table: pd.DataFrame,
    mouse_blocks: list[tuple[int, np.ndarray, sp.csr_matrix]],
) -> SimulatedStudy:
    """Study with barcodes as written and the mouse cells of mixed-species files appended."""
    truth = study.truth_cells.copy()
    truth["barcode"] = written
    obs = study.adata.obs.copy()
    obs["barcode"] = written
    x_parts = [study.adata.X]
    truth_parts = [truth]
    obs_parts = [obs]
    for r, barcodes, counts in mouse_blocks:
        row = table.loc[r]
        extra = pd.DataFrame(
            {
                "sample": row["sample"],
                "donor": row["donor"],
                "condition": row["condition"],
                "barcode": barcodes,
                "cell_type": "mouse",
                "artefact": "other_species",
                "doublet_types": "",
                "phase": "none",
            }
        )
        truth_parts.append(extra)
        extra_obs = extra.copy()
        for column in obs.columns:
            if column not in extra_obs.columns:
                value = row[column] if column in row.index else ""
                extra_obs[column] = "" if _absent(value) else str(value)
        extra_obs.index = pd.Index([f"{row['sample']}_mouse_{b}" for b in barcodes])
        obs_parts.append(extra_obs[obs.columns])
        x_parts.append(counts)
    truth_all = pd.concat(truth_parts, ignore_index=True)
    obs_all = pd.concat([o.astype({c: object for c in o.columns}) for o in obs_parts])
    # file order: each sample's cells, then its mouse cells, samples in sheet order
    position = {sample: i for i, sample in enumerate(table["sample"])}
    is_extra = np.repeat(np.arange(len(truth_parts)) > 0, [len(t) for t in truth_parts])
    order = np.lexsort((is_extra, truth_all["sample"].map(position).to_numpy()))
    truth_all = truth_all.iloc[order].reset_index(drop=True)
    obs_all = obs_all.iloc[order]
    for column in obs_all.columns:
        if column != "barcode":
            obs_all[column] = pd.Categorical(obs_all[column].astype(str))
    adata = ad.AnnData(
        X=sp.vstack(x_parts, format="csr")[order].astype(np.int32),
        obs=obs_all,
        var=study.adata.var.copy(),
        uns=dict(study.adata.uns),
    )
    return SimulatedStudy(
        adata=adata,
        truth_cells=truth_all,
        truth_de=study.truth_de,
        truth_composition=study.truth_composition,
        truth_condition_composition=study.truth_condition_composition,
        truth_genes=study.truth_genes,
    )


def write_truth(study: SimulatedStudy, truth_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write the study's truth tables as TSV files whose names contain ``truth``.

    Parameters
    ----------
    study
        A simulated study.
    truth_dir
        Output directory (created if needed); each file is replaced atomically.

    Returns
    -------
    dict
        Table name -> path written (``truth_cells``, ``truth_de``, ``truth_composition``,
        ``truth_condition_composition``, ``truth_genes``).
    """
    directory = Path(truth_dir)
    directory.mkdir(parents=True, exist_ok=True)
    tables = {
        "truth_cells": study.truth_cells,
        "truth_de": study.truth_de,
        "truth_composition": study.truth_composition,
        "truth_condition_composition": study.truth_condition_composition,
        "truth_genes": study.truth_genes,
    }
    paths = {}
    for name, frame in tables.items():
        path = directory / f"{name}.tsv"
        tmp = directory / f".{name}.tsv.{os.getpid()}.tmp"
        frame.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
        os.replace(tmp, path)
        paths[name] = path
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``cordatlas-simulate --samples SHEET.tsv --truth-dir DIR [...]``.

    Parameters
    ----------
    argv
        Arguments (default: ``sys.argv[1:]``). Paths in the sheet are relative to the
        working directory.

    Returns
    -------
    int
        Exit status (0 on success; user errors exit with status 2 and one message).
    """
    parser = argparse.ArgumentParser(
        prog="cordatlas-simulate",
        description="Simulate a cord blood vs adult scRNA-seq study with known truth and write "
        "each sample of SHEET in its format and path, plus truth tables.",
    )
    parser.add_argument("--samples", required=True, help="sample sheet (TSV)")
    parser.add_argument("--truth-dir", required=True, help="directory for the truth tables")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--cells-per-sample", type=int, default=750, help="barcodes per sample, artefacts included"
    )
    parser.add_argument("--genes", type=int, default=2000, help="genes simulated (default 2000)")
    parser.add_argument(
        "--no-condition-effect",
        action="store_true",
        help="plant no cord-vs-adult difference (a null study)",
    )
    parser.add_argument("--damaged-rate", type=float, default=0.05)
    parser.add_argument("--low-count-rate", type=float, default=0.05)
    parser.add_argument("--doublet-rate", type=float, default=0.06)
    parser.add_argument("--threads", type=int, default=1, help="threads drawing counts")
    parser.add_argument(
        "--contrast",
        nargs=2,
        default=("cord_blood", "adult"),
        metavar=("CONDITION", "REFERENCE"),
        help="condition and reference (default: cord_blood adult)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        sheet = Path(args.samples)
        if not sheet.is_file():
            raise UserInputError(f"sample sheet {sheet} not found; pass an existing TSV.")
        samples = pd.read_csv(sheet, sep="\t", dtype=str, keep_default_na=False)
        study = write_demo(
            samples,
            None,
            truth_dir=args.truth_dir,
            seed=args.seed,
            n_cells_per_sample=args.cells_per_sample,
            n_genes=args.genes,
            condition_effect=not args.no_condition_effect,
            damaged_rate=args.damaged_rate,
            low_count_rate=args.low_count_rate,
            doublet_rate=args.doublet_rate,
            contrast=tuple(args.contrast),
            threads=args.threads,
        )
    except UserInputError as err:
        parser.exit(2, f"cordatlas-simulate: error: {err}\n")
    log.info(
        "simulated %d barcodes x %d genes; truth tables in %s",
        study.adata.n_obs,
        study.adata.n_vars,
        args.truth_dir,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
