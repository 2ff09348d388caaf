"""Sections after the results: the truth panel (simulated data), methods, provenance."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import pandas as pd
import yaml

from cordatlas.report import blocks as b
from cordatlas.report import provenance, truth
from cordatlas.report.blocks import Block, Page
from cordatlas.report.methods import methods_table


def truth_section(
    page: Page,
    planted: dict[str, pd.DataFrame | None],
    findings: pd.DataFrame | None,
    de_genes: pd.DataFrame | None,
) -> Block:
    """What the simulator planted beside what the workflow found (simulated studies only)."""
    blocks: list[Block] = [b.text(
        "These samples are synthetic: the simulator wrote them with known effects. Planted "
        "composition shifts are at least 2-fold between the expected proportions; 'recovered' "
        "means a donor-level call in the planted direction.")]  # fmt: skip
    composition = planted.get("truth_condition_composition")
    if composition is not None and findings is not None:
        blocks.append(page.table(truth.composition_truth(composition, findings, page.contrast),
                                 "truth-composition", caption="Composition: planted vs found"))  # fmt: skip
    de = planted.get("truth_de")
    if de is not None:
        blocks.append(page.table(truth.de_truth(de, de_genes, alpha=page.alpha), "truth-de",
                                 caption="Planted expression programmes: genes found at "
                                 f"padj < {page.alpha:g} with the planted sign"))  # fmt: skip
        if findings is not None:
            blocks.append(page.table(truth.signature_truth(de, findings), "truth-signatures",
                                     caption="Planted programmes as signatures: the call"))  # fmt: skip
    if len(blocks) == 1:
        blocks.append(b.absent("truth tables"))
    return b.section("truth", "Truth panel (simulated data)", blocks)


def methods_section(page: Page, config: Mapping[str, Any]) -> Block:
    """Each step as it ran: method, parameters from the resolved config, citation."""
    return b.section("methods", "Methods", [
        b.text("Written from the configuration this run used (see Provenance for all of it)."),
        page.table(methods_table(config), "methods"),
    ])  # fmt: skip


def provenance_section(
    page: Page,
    config: Mapping[str, Any],
    *,
    checksummed: list[str],
    benchmarks: str | None,
    synthetic: bool,
    snakemake_version: str | None,
) -> Block:
    """Versions, date, seeds, input checksums, time and memory per rule, the resolved config."""
    built = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    blocks: list[Block] = [
        b.text(f"Report built {built} with Snakemake {snakemake_version or 'unknown'}."),
        page.table(provenance.package_versions(), "versions", caption="Package versions"),
        page.table(provenance.seeds(config, synthetic=synthetic), "seeds", caption="Seeds"),
        page.table(provenance.checksums(checksummed), "checksums",
                   caption="Inputs: size and sha256"),
    ]  # fmt: skip
    bench = provenance.benchmarks(benchmarks)
    blocks.append(page.table(bench, "benchmarks", caption="Time (s) and peak memory (MB) per "
                             "rule, from benchmarks/") if bench is not None
                  else b.absent("benchmarks/"))  # fmt: skip
    resolved = yaml.safe_dump(dict(config), sort_keys=False, default_flow_style=None)
    blocks.append(b.group("Resolved configuration", [b.pre(resolved)]))
    return b.section("provenance", "Provenance", blocks)
