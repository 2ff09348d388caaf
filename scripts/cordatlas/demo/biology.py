"""The simulated biology: cell types, gene sets and expression levels (data, not analysis).

Everything here is a constant read by :mod:`cordatlas.demo.simulate` (the study) and
:mod:`cordatlas.demo.write` (the demo files); nothing draws random numbers.
"""

from __future__ import annotations

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
#: The lineages, in order of first appearance.
LINEAGES: tuple[str, ...] = tuple(dict.fromkeys(LINEAGE.values()))

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

# ============================================================================================
# The realistic simulator (config demo.realism: realistic): what the simple one leaves out
# ============================================================================================
#: Dirichlet concentration of donor proportions: with concentration a, a type of share p has a
#: between-donor sd of sqrt(p (1 - p) / (a + 1)); a = 30 gives a 20 % share an sd of 7 points
#: (about 9-33 % between the 5th and 95th percentile donor) and a 2 % share an sd of 2.5
#: points, the spread of major blood subsets between healthy people, not the 200 of the simple
#: simulator (a 20 % share +- 3 points).
REALISTIC_DIRICHLET_CONCENTRATION = 30.0
#: Donor x gene log effect shared by a donor's cell types, and donor x type x gene on top: a
#: total log sd of 0.36, the biological coefficient of variation of about 0.4 that edgeR's
#: user guide gives as typical between human individuals (0.1 for inbred model organisms).
REALISTIC_DONOR_LOG_SD = 0.2
REALISTIC_DONOR_TYPE_LOG_SD = 0.3

#: Ambient RNA: every droplet holds a share of the sample's soup (its cells' average
#: expression); SoupX (Young & Behjati 2020, GigaScience 9:giaa151) estimates contamination of
#: a few per cent to over 10 % in droplet data. Per sample a mean share from this range, per
#: cell a gamma spread around it (shape below).
SOUP_FRACTION_RANGE = (0.02, 0.10)
SOUP_CELL_SHAPE = 4.0
#: Lysed red cells put haemoglobin mRNA in the soup: its haemoglobin share is this times the
#: sample's erythroid share (erythroid + erythroid_progenitor), at most SOUP_HB_MAX, so cord
#: samples (more nucleated red cells and reticulocytes) carry more globin in every droplet.
SOUP_HB_PER_ERYTHROID = 4.0
SOUP_HB_MAX = 0.6

#: Naive-to-memory continuum: T cells of these (naive, memory) pairs lie on an axis t in
#: [0, 1] (0 naive, 1 memory), their profile the geometric interpolation of the two types'.
#: A cell's label is the side of 0.5 it sits on; within a side t is drawn from a Beta with
#: these parameters measured from the pure end, so that a fair share sits near the middle.
CONTINUUM_PAIRS: tuple[tuple[str, str], ...] = (
    ("CD4_naive", "CD4_memory"),
    ("CD8_naive", "CD8_effector"),
)
CONTINUUM_STEPS = 20
CONTINUUM_BETA = (1.2, 1.8)

#: Doublets: the first parent's share of the doublet's RNA is Beta distributed (unequal
#: capture and unequal cell sizes), and the second parent is drawn from the sample's type
#: frequencies, so the homotypic share is the sum of squared frequencies (no fixed 10 %).
DOUBLET_MIX_BETA = (2.0, 2.0)

#: Damaged cells spread across the QC thresholds: planted mitochondrial shares from 8 % (below
#: any usual cut) to 40 %, and milder RNA loss (total relative to a healthy cell of the type).
REALISTIC_DAMAGED_MITO_RANGE = (0.08, 0.40)
REALISTIC_DAMAGED_TOTAL_RANGE = (0.3, 0.9)

#: Stress / processing-delay programme (the genes of config/signatures.yaml's
#: stress_processing_delay control): in stressed donors every cell's stress genes rise by a
#: donor-level log2 fold from this range times a per-cell gamma intensity (mean 1).
STRESS_GENES: tuple[str, ...] = tuple(PROGRAMMES["stress"])
STRESS_LOG2FC_RANGE = (1.0, 2.5)
STRESS_CELL_SHAPE = 4.0
#: Share of each condition's donors stressed when stress is independent of condition.
STRESS_DONOR_SHARE = 0.5

#: Marker programmes that differ from the annotation panel (config/marker_panel.yaml): panel
#: markers barely expressed in their type (as CD4 mRNA is poorly captured by droplets) ...
WEAK_PANEL_MARKERS: dict[str, tuple[str, ...]] = {
    "HSC_MPP": ("HLF", "MECOM"),
    "myeloid_progenitor": ("MS4A3",),
    "erythroid_progenitor": ("KLF1",),
    "erythroid": ("SLC4A1",),
    "megakaryocyte": ("GP9",),
    "CD14_monocyte": ("VCAN",),
    "CD16_monocyte": ("CSF1R",),
    "cDC": ("CLEC10A",),
    "pDC": ("CLEC4C",),
    "B_memory": ("AIM2",),
    "CD4_naive": ("CD4",),
    "CD4_memory": ("CD4",),
    "Treg": ("CD4", "IKZF2"),
    "NK_CD56dim": ("KLRF1",),
}
WEAK_PANEL_MARKER_CP10K = 0.5
#: ... and strong type-specific genes the panel lacks (unnamed SIMG filler genes).
UNNAMED_MARKERS_PER_TYPE = 4
UNNAMED_MARKER_CP10K = (10.0, 40.0)

#: Signature whose literature expectation each planted effect is judged against, by programme
#: (gene-level exceptions below), and that expectation (config/signatures.yaml).
LITERATURE_SET: dict[str, str] = {
    "fetal_programme": "fetal_programme",
    "fetal_haemoglobin": "fetal_haemoglobin",
    "cytotoxicity": "cytotoxicity",
    "neonatal_alarmins": "neonatal_alarmins",
}
LITERATURE_SET_OF_GENE: dict[str, str] = {
    "BCL11A": "globin_switch_bcl11a",
    # the library keeps the contested perforin/granzyme B genes in a set of their own
    "PRF1": "perforin_granzyme_b",
    "GZMB": "perforin_granzyme_b",
}
LITERATURE_DIRECTION: dict[str, str] = {
    "fetal_programme": "up",
    "fetal_haemoglobin": "up",
    "globin_switch_bcl11a": "down",
    "cytotoxicity": "down",
    "perforin_granzyme_b": "conflicting",  # sources disagree: nothing to agree or disagree with
    "neonatal_alarmins": "up",
}
#: One planted effect opposite to the literature (Ulas et al. 2017 report S100A8/S100A9 high
#: in neonatal monocytes): the realistic simulator plants them lower in the condition, so a
#: correct method must report "disagrees with the literature" there.
OPPOSITE_EFFECTS: tuple[tuple[str, tuple[str, ...], dict[str, float]], ...] = (
    ("neonatal_alarmins", ("CD14_monocyte",), {"S100A8": -1.2, "S100A9": -1.2}),
)
