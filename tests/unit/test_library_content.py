"""The curated signature library checked against its own rules and its sources (issue 11, points
10 and 11): contested genes kept apart, every set cited, the sets the literature notes ask for."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from cordatlas.errors import UserInputError
from cordatlas.genesets.library import (
    contested_overlaps,
    load_gene_sets,
    load_library,
    validate_gene_sets,
)

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "config" / "signatures.yaml"


@pytest.fixture(scope="module")
def sets() -> dict:
    return load_gene_sets(LIBRARY)["gene_sets"]


def _raw() -> dict:
    return yaml.safe_load(LIBRARY.read_text())


# ============================================================================================
# The file's own rules
# ============================================================================================
def test_every_set_cites_a_source(sets):
    for name, entry in sets.items():
        assert entry["citations"], f"{name} cites nothing"
        assert all(len(c) > 20 for c in entry["citations"]), name


def test_contested_genes_sit_only_in_contested_sets(sets):
    contested = {name for name, entry in sets.items() if entry["contested"]}
    assert "perforin_granzyme_b" in contested
    assert all(sets[name]["expected_direction"] == "conflicting" for name in contested)
    assert contested_overlaps({"version": "x", "gene_sets": sets}) == []
    assert not {"PRF1", "GZMB"} & set(sets["cytotoxicity"]["genes"])
    assert sets["cytotoxicity"]["expected_direction"] == "down"


def test_the_overlap_check_finds_a_contested_gene_in_a_directional_set(sets):
    broken = {name: dict(entry) for name, entry in sets.items()}
    broken["cytotoxicity"]["genes"] = [*broken["cytotoxicity"]["genes"], "PRF1"]
    problems = contested_overlaps({"version": "x", "gene_sets": broken})
    assert len(problems) == 1
    assert "PRF1" in problems[0] and "'cytotoxicity'" in problems[0]
    assert "NK_CD56dim" in problems[0] and "NK_CD56bright" in problems[0]
    # CD8_effector is outside the contested claim's cell types: no overlap there
    broken["cytotoxicity"]["cell_types"] = ["CD8_effector"]
    assert contested_overlaps({"version": "x", "gene_sets": broken}) == []
    # a set with no cell-type restriction shares every cell type
    broken["cytotoxicity"]["cell_types"] = None
    assert len(contested_overlaps({"version": "x", "gene_sets": broken})) == 1


def test_a_user_library_breaking_the_rule_is_warned_about(tmp_path, caplog):
    extra = {
        "version": "lab.1",
        "gene_sets": {
            "my_nk": {
                "genes": ["GZMB", "NKG7"],
                "category": "user",
                "expected_direction": "up",
                "cell_types": ["NK_CD56dim"],
                "role": "biological",
                "citations": ["our lab 2026, unpublished flow cytometry"],
            }
        },
    }
    path = tmp_path / "extra.yaml"
    path.write_text(yaml.safe_dump(extra))
    with caplog.at_level(logging.WARNING, logger="cordatlas.genesets.library"):
        merged = load_library(LIBRARY, [path])
    assert "my_nk" in merged["gene_sets"]
    assert any("GZMB" in r.getMessage() and "my_nk" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("value", "direction", "needle"),
    [
        ("yes", "conflicting", "must be true or false"),
        (True, "down", "marked contested but expects 'down'"),
        (True, None, "marked contested but expects None"),
    ],
)
def test_the_contested_flag_is_checked(value, direction, needle):
    content = _raw()
    entry = content["gene_sets"]["perforin_granzyme_b"]
    entry["contested"] = value
    entry["expected_direction"] = direction
    with pytest.raises(UserInputError, match=needle) as err:
        validate_gene_sets(content, origin="lib.yaml")
    assert "perforin_granzyme_b" in str(err.value) and "lib.yaml" in str(err.value)


def test_sets_without_the_flag_are_not_contested(sets):
    raw = _raw()["gene_sets"]
    for name, entry in sets.items():
        assert entry["contested"] is bool(raw[name].get("contested", False)), name


# ============================================================================================
# Corrected sources (point 10)
# ============================================================================================
def test_lee_2013_note_describes_both_experiments(sets):
    note = sets["fetal_haemoglobin"]["notes"]
    assert "knockdown" in note and "cord blood CD34+" in note
    assert "overexpression in cultured adult erythroblasts" in note


def test_bcl11a_cites_its_primary_sources(sets):
    citations = " ".join(sets["globin_switch_bcl11a"]["citations"])
    assert "Sankaran VG et al. 2008" in citations and "Science 322:1839" in citations
    assert "doi:10.1126/science.1165409" in citations
    assert "Sankaran VG, Xu J" in citations and "Nature 460:1093" in citations


# ============================================================================================
# New sets (points 10 and 11), each with its genes, direction, cell types and sources
# ============================================================================================
NEW_SETS = {
    "b1_like_cd5_arid3a": (["CD5", "ARID3A"], "up", {"B_naive"}, ["Bhat NM", "Zhou Y"]),
    "nk_activating_nkg2d": (["KLRK1"], "up", {"NK_CD56dim"}, ["Shereck E"]),
    "recent_thymic_emigrant": (
        ["PTK7", "PECAM1", "CR1", "CR2"],
        "up",
        {"CD4_naive"},
        ["Haines CJ", "Kimmig S", "Pekalski ML"],
    ),
    "treg_resting_naive": (["CCR7", "SELL"], "up", {"Treg"}, ["Miyara M", "Collier FM"]),
    "treg_activated": (
        ["FOXP3", "CTLA4", "CCR4", "HLA-DRA"],
        "down",
        {"Treg"},
        ["Miyara M", "Collier FM"],
    ),
}


@pytest.mark.parametrize("name", list(NEW_SETS))
def test_new_sets_hold_their_genes_and_sources(sets, name):
    genes, direction, cell_types, authors = NEW_SETS[name]
    entry = sets[name]
    assert entry["genes"] == genes
    assert entry["expected_direction"] == direction
    assert cell_types <= set(entry["cell_types"])
    assert entry["role"] == "biological" and not entry["contested"]
    citations = " ".join(entry["citations"])
    for author in authors:
        assert author in citations, f"{name} lacks {author}"


def test_ccr7_direction_is_stated_for_the_right_state(sets):
    """CCR7 falls in activated Tregs: it marks the resting set, never the activated one."""
    assert "CCR7" in sets["treg_resting_naive"]["genes"]
    assert "CCR7" not in sets["treg_activated"]["genes"]
    assert "7-8 days after birth" in sets["treg_activated"]["notes"]
