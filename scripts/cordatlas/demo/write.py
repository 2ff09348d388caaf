"""Write a simulated study as demo files: every sample in its format, pooled files, barnyard files.

Each file is written where the sample sheet's ``path`` says; the truth tables go to a folder
of their own (:func:`write_truth`).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from cordatlas.checks import require_columns
from cordatlas.demo.biology import (
    HUMAN_MOUSE_AMBIENT,
    MOUSE_CELL_RATE,
    MOUSE_GENES_NAMED,
    MOUSE_HUMAN_AMBIENT,
    MOUSE_LIBRARY_MEDIAN,
    N_MOUSE_GENES,
)
from cordatlas.demo.simulate import (
    SimulatedStudy,
    _absent,
    _normalise,
    _random_barcodes,
    _sample_counts,
    _sample_table,
    simulate_study,
)
from cordatlas.errors import UserInputError
from cordatlas.io.formats import COUNT_FORMATS, infer_format
from cordatlas.io.writers import write_counts
from cordatlas.params import Contrast, DemoParams

__all__ = ["demo_rows", "write_demo", "write_truth"]

log = logging.getLogger(__name__)


def write_demo(
    samples: pd.DataFrame,
    demo: DemoParams,
    contrast: Contrast,
    *,
    base_dir: str | os.PathLike[str] | None = None,
    truth_dir: str | os.PathLike[str] | None = None,
    damaged_rate: float = 0.05,
    low_count_rate: float = 0.05,
    doublet_rate: float = 0.06,
    threads: int = 1,
) -> SimulatedStudy:
    """Simulate a study and write every sample where, and in the format, the sheet says.

    The study is :func:`~cordatlas.demo.simulate.simulate_study`'s. Conventions (they exercise every reader the workflow has):

    - Samples of the contrast's condition (cord blood) are written in Cell Ranger v3
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
    demo
        config ``demo``: ``seed``, ``n_cells_per_sample``, ``n_genes``,
        ``condition_effect``, ``realism`` and ``stress`` as in
        :func:`~cordatlas.demo.simulate.simulate_study`. Its
        ``outdir`` is where the sheet's demo paths already lie; paths are written as the
        sheet gives them (see `base_dir`).
    contrast
        config ``contrast``: planted effects are of its condition versus its reference.
    base_dir
        Directory that relative paths are resolved against; None resolves them against the
        working directory.
    truth_dir
        Directory for ``truth_cells.tsv``, ``truth_de.tsv``, ``truth_composition.tsv``,
        ``truth_condition_composition.tsv``, ``truth_genes.tsv`` and ``truth_samples.tsv``;
        None writes none.
    damaged_rate, low_count_rate, doublet_rate, threads
        As in :func:`~cordatlas.demo.simulate.simulate_study`.

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
    table, pair = _sample_table(samples, contrast.as_tuple())
    require_columns(
        table.columns, ("format", "path"), table="sample sheet", fix="write_demo needs them."
    )
    files, formats = _demo_files(table)
    patterns = _barcode_patterns(table, files)
    study = simulate_study(
        table,
        n_cells_per_sample=demo.n_cells_per_sample,
        n_genes=demo.n_genes,
        seed=demo.seed,
        condition_effect=demo.condition_effect,
        damaged_rate=damaged_rate,
        low_count_rate=low_count_rate,
        doublet_rate=doublet_rate,
        contrast=pair,
        realism=demo.realism,
        stress=demo.stress,
        threads=threads,
    )
    plan = _FilePlan.start(table, study, seed=demo.seed, condition=pair[0], base_dir=base_dir)
    any_mixed = False
    for path, rows in files.items():
        any_mixed |= _write_file(plan, path, rows, formats[path], patterns)
    study = _with_written_barcodes(study, plan.written, table, plan.mouse_blocks)
    if any_mixed:
        study.truth_genes = pd.concat(
            [study.truth_genes, _mouse_gene_table(plan.mouse_genes)], ignore_index=True
        )
    if truth_dir is not None:
        write_truth(study, truth_dir)
    return study


def demo_rows(samples: pd.DataFrame, outdir: str | os.PathLike[str]) -> pd.DataFrame:
    """The sample-sheet rows the simulator writes: those whose ``path`` lies under ``outdir``.

    The same rule as the workflow's ``is_demo_path`` (``common.smk``), so the rule
    ``simulate_demo`` can re-read the sheet instead of receiving the table as a param.
    """
    folder = Path(outdir)
    if "path" not in samples.columns:
        return samples.iloc[0:0]
    under = samples["path"].map(lambda p: not _absent(p) and folder in Path(str(p)).parents)
    return samples[under.astype(bool)]


# ---- check --------------------------------------------------------------------------------
def _demo_files(table: pd.DataFrame) -> tuple[dict[str, list[int]], dict[str, str]]:
    """The sheet rows written to each path, and each path's format (`auto` resolved)."""
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
    return files, formats


def _barcode_patterns(
    table: pd.DataFrame, files: Mapping[str, list[int]]
) -> dict[int, re.Pattern[str] | None]:
    """Each row's compiled ``barcode_pattern``; a row pooled with others must have one."""
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
    return patterns


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


def _optional(row: pd.Series, column: str) -> str | None:
    if column not in row.index or _absent(row[column]):
        return None
    return str(row[column])


# ---- compute ------------------------------------------------------------------------------
@dataclass
class _FilePlan:
    """What writing the files needs, and what it records: barcodes as written, mouse cells."""

    table: pd.DataFrame
    study: SimulatedStudy
    seed: int
    #: the contrast's condition, whose samples get Cell Ranger v3 layouts
    condition: str
    base: Path | None
    mouse_genes: list[str]
    mouse_profile: np.ndarray
    #: gamma shape so large that the negative binomial is Poisson
    poisson_like: np.ndarray
    cell_rows: dict[str, np.ndarray]
    #: truth_cells' barcodes as written in the files (pooled ones prefixed)
    written: np.ndarray
    mouse_blocks: list[tuple[int, np.ndarray, sp.csr_matrix]] = field(default_factory=list)

    @classmethod
    def start(
        cls,
        table: pd.DataFrame,
        study: SimulatedStudy,
        *,
        seed: int,
        condition: str,
        base_dir: str | os.PathLike[str] | None,
    ) -> _FilePlan:
        """The plan before any file is written (the mouse profile is drawn here, seeded)."""
        truth = study.truth_cells
        mouse_genes = _mouse_genes()
        mouse_profile = _mouse_profile(
            len(mouse_genes), np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))
        )
        return cls(
            table=table,
            study=study,
            seed=seed,
            condition=condition,
            base=Path(base_dir) if base_dir is not None else None,
            mouse_genes=mouse_genes,
            mouse_profile=mouse_profile,
            poisson_like=np.full(study.adata.n_vars + len(mouse_genes), 1e6),
            cell_rows={s: np.flatnonzero(truth["sample"].to_numpy() == s) for s in table["sample"]},
            written=truth["barcode"].to_numpy(dtype=object).copy(),
        )


def _write_file(
    plan: _FilePlan,
    path: str,
    rows: list[int],
    fmt: str,
    patterns: Mapping[int, re.Pattern[str] | None],
) -> bool:
    """Write the rows sharing `path` into one file; returns whether it is mixed-species."""
    mixed = _is_mixed_species(fmt, path)
    blocks, block_barcodes, barcodes_by_row = _file_blocks(plan, rows, mixed=mixed)
    _check_patterns(plan.table, barcodes_by_row, patterns, path)
    first = plan.table.loc[rows[0]]
    version = 3 if first["condition"] == plan.condition else 2
    orientation = _optional(first, "orientation")
    if orientation not in ("genes_x_cells", "cells_x_genes"):
        orientation = "genes_x_cells" if mixed else "cells_x_genes"
    genome = _optional(first, "genome") or "GRCh38"
    human_genes = plan.study.adata.var_names.tolist()
    var_names = [f"HUMAN_{g}" for g in human_genes] if mixed else list(human_genes)
    ids = plan.study.adata.var["gene_ids"].astype(str).tolist()
    if mixed:
        var_names += plan.mouse_genes
        ids += _mouse_gene_ids(len(plan.mouse_genes))
    out = ad.AnnData(
        X=sp.vstack(blocks, format="csr"),
        obs=pd.DataFrame(index=pd.Index(np.concatenate(block_barcodes).astype(str))),
        var=pd.DataFrame({"gene_ids": ids}, index=pd.Index(var_names)),
    )
    target = Path(path)
    if plan.base is not None and not target.is_absolute():
        target = plan.base / target
    write_counts(out, target, format=fmt, version=version, orientation=orientation, genome=genome)
    log.info("wrote %s (%s, %d barcodes)", target, fmt, out.n_obs)
    return mixed


def _file_blocks(
    plan: _FilePlan, rows: list[int], *, mixed: bool
) -> tuple[list[sp.csr_matrix], list[np.ndarray], dict[int, list[str]]]:
    """One file's count blocks and barcodes, row by row (mouse cells after their row's)."""
    pooled = len(rows) > 1
    blocks: list[sp.csr_matrix] = []
    block_barcodes: list[np.ndarray] = []
    barcodes_by_row: dict[int, list[str]] = {}
    for r in rows:
        sample = plan.table.at[r, "sample"]
        sel = plan.cell_rows[sample]
        barcodes = plan.study.truth_cells["barcode"].to_numpy(dtype=object)[sel]
        if pooled:
            barcodes = np.array([f"{sample}-{b}" for b in barcodes], dtype=object)
        plan.written[sel] = barcodes
        barcodes_by_row[r] = [str(b) for b in barcodes]
        human = plan.study.adata.X[sel]
        if not mixed:
            blocks.append(human)
            block_barcodes.append(barcodes)
            continue
        rng = np.random.default_rng(np.random.SeedSequence(plan.seed, spawn_key=(2, r)))
        blocks.append(_with_mouse_ambient(plan, human, rng))
        block_barcodes.append(barcodes)
        mouse = _mouse_cells(plan, r, rng, pooled=pooled)
        if mouse is not None:
            counts, mouse_bc = mouse
            blocks.append(counts)
            block_barcodes.append(mouse_bc)
            barcodes_by_row[r] += [str(b) for b in mouse_bc]
    return blocks, block_barcodes, barcodes_by_row


def _with_mouse_ambient(
    plan: _FilePlan, human: sp.csr_matrix, rng: np.random.Generator
) -> sp.csr_matrix:
    """Human cells' counts with mouse genes appended: a little mouse ambient RNA in each."""
    totals = np.asarray(human.sum(axis=1)).ravel()
    cross = _sample_counts(
        (totals * HUMAN_MOUSE_AMBIENT)[:, None] * plan.mouse_profile[None, :],
        plan.poisson_like[: len(plan.mouse_genes)],
        rng,
    )
    return sp.hstack([human, cross], format="csr")


def _mouse_cells(
    plan: _FilePlan, r: int, rng: np.random.Generator, *, pooled: bool
) -> tuple[sp.csr_matrix, np.ndarray] | None:
    """Row `r`'s mouse cells (counts on human then mouse genes, barcodes), recorded in `plan`."""
    truth = plan.study.truth_cells
    sample = plan.table.at[r, "sample"]
    sel = plan.cell_rows[sample]
    n_mouse = int(round(MOUSE_CELL_RATE * sel.size))
    if not n_mouse:
        return None
    healthy = sel[truth["artefact"].to_numpy()[sel] == "none"]
    ambient = _normalise(np.asarray(plan.study.adata.X[healthy].sum(axis=0)).ravel() + 1e-3)
    library = MOUSE_LIBRARY_MEDIAN * np.exp(rng.normal(0.0, 0.4, n_mouse))
    profile = np.concatenate(
        [MOUSE_HUMAN_AMBIENT * ambient, (1 - MOUSE_HUMAN_AMBIENT) * plan.mouse_profile]
    )
    mouse = _sample_counts(library[:, None] * profile[None, :], plan.poisson_like, rng)
    mouse_bc = _random_barcodes(n_mouse, rng, exclude=frozenset(truth["barcode"].to_numpy()[sel]))
    if pooled:
        mouse_bc = np.array([f"{sample}-{b}" for b in mouse_bc], dtype=object)
    plan.mouse_blocks.append((r, mouse_bc, mouse[:, : plan.study.adata.n_vars].tocsr()))
    return mouse, mouse_bc


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


# ---- format -------------------------------------------------------------------------------
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
        # what the simulator planted does not apply to the spiked-in mouse cells
        extra = extra.reindex(columns=truth.columns)
        extra["stress_log2fc"] = 0.0
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
    text = [c for c in obs.columns if not pd.api.types.is_numeric_dtype(obs[c])]
    obs_all = pd.concat([o.astype(dict.fromkeys(text, object)) for o in obs_parts])
    # file order: each sample's cells, then its mouse cells, samples in sheet order
    position = {sample: i for i, sample in enumerate(table["sample"])}
    is_extra = np.repeat(np.arange(len(truth_parts)) > 0, [len(t) for t in truth_parts])
    order = np.lexsort((is_extra, truth_all["sample"].map(position).to_numpy()))
    truth_all = truth_all.iloc[order].reset_index(drop=True)
    obs_all = obs_all.iloc[order]
    for column in text:
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
        truth_samples=study.truth_samples,
    )


def _mouse_gene_ids(n: int) -> list[str]:
    return [f"ENSMUSG9{i:09d}" for i in range(1, n + 1)]


def _mouse_gene_table(mouse_genes: list[str]) -> pd.DataFrame:
    """truth_genes rows of the mouse genes in mixed-species files."""
    return pd.DataFrame(
        {
            "gene": mouse_genes,
            "gene_ids": _mouse_gene_ids(len(mouse_genes)),
            "category": "mouse_spike_in",
            "categories": "mouse_spike_in",
        }
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
        ``truth_condition_composition``, ``truth_genes``, ``truth_samples``).
    """
    directory = Path(truth_dir)
    directory.mkdir(parents=True, exist_ok=True)
    tables = {
        "truth_cells": study.truth_cells,
        "truth_de": study.truth_de,
        "truth_composition": study.truth_composition,
        "truth_condition_composition": study.truth_condition_composition,
        "truth_genes": study.truth_genes,
        "truth_samples": study.truth_samples,
    }
    paths = {}
    for name, frame in tables.items():
        path = directory / f"{name}.tsv"
        tmp = directory / f".{name}.tsv.{os.getpid()}.tmp"
        frame.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
        os.replace(tmp, path)
        paths[name] = path
    return paths
