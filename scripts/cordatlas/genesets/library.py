"""The gene-signature library: reading YAML or GMT files, validating, merging a user's sets, expectations.

The marker panel and this library share their reader and header checks
(:mod:`cordatlas.genesets.curated`). Light by design (PyYAML, no anndata or scanpy).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cordatlas.checks import check_safe_name
from cordatlas.errors import UserInputError
from cordatlas.genesets.curated import (
    check_entry_fields,
    merge_resources,
    read_yaml,
    validate_header,
)

log = logging.getLogger(__name__)

#: Keys of a library file and of each set (unknown keys are errors, not ignored).
LIBRARY_KEYS = ("version", "species", "description", "gene_sets")
REQUIRED_LIBRARY_KEYS = ("version", "gene_sets")
SET_KEYS = (
    "genes",
    "category",
    "expected_direction",
    "cell_types",
    "role",
    "citations",
    "notes",
    "contested",
)
REQUIRED_SET_KEYS = ("genes", "category", "expected_direction", "role", "citations")

CATEGORIES = (
    "ontogeny",
    "thymic_output",
    "stemness",
    "potency",
    "immune_regulation",
    "cytotoxicity",
    "innate",
    "proliferation",
    "repair",
    "interferon",
    "control",
    "user",
)
#: Expected direction in the condition (cord blood) relative to the reference (adult).
DIRECTIONS = ("up", "down", "conflicting")
ROLES = ("biological", "control")

#: Name of the per-cell potency column (:func:`cordatlas.compare.signatures.potency_score`); a
#: reserved set name.
POTENCY = "potency"
#: Library-like metadata of scores that are not gene sets of the library.
DERIVED_SCORES: dict[str, dict[str, Any]] = {
    POTENCY: {
        "genes": [],
        "category": "potency",
        "expected_direction": None,
        "cell_types": None,
        "role": "biological",
        "citations": [
            "Gulati GS et al. 2020. Single-cell transcriptional diversity is a hallmark of "
            "developmental potential. Science 367:405-411. doi:10.1126/science.aax0249. "
            "PMID 31974247"
        ],
        "notes": "CytoTRACE-style gene-counts signature score, rank-scaled to [0, 1] over all "
        "cells (1 = most potent); see cordatlas.compare.signatures.potency_score",
        "contested": False,
    }
}


def load_gene_sets(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a gene-signature library: YAML (see config/signatures.yaml) or GMT.

    Parameters
    ----------
    path
        ``.yaml``/``.yml``: ``version``, optional ``species`` and ``description``, and
        ``gene_sets`` (name -> entry with ``genes``, ``category``, ``expected_direction``,
        optional ``cell_types``, ``role``, ``citations``, optional ``notes``).
        ``.gmt``: one set per line, ``name<TAB>description<TAB>gene<TAB>gene...`` (MSigDB's
        format); its sets get category ``user``, role ``biological`` and no expectation.

    Returns
    -------
    dict
        ``{"version", "species", "description", "source", "gene_sets": {name: entry}}`` with
        every entry holding all :data:`SET_KEYS` (``cell_types`` None = all cell types),
        duplicate genes removed, sets in file order.

    Raises
    ------
    UserInputError
        The file is missing, of another type, unreadable, or a set or field is invalid (the
        message names the file, the set and the field).
    """
    source = Path(path)
    if not source.is_file():
        raise UserInputError(
            f"gene-signature library {str(source)!r} not found; set signatures.library (or "
            "signatures.extra_sets) to an existing .yaml or .gmt file such as "
            "config/signatures.yaml"
        )
    suffix = source.suffix.lower()
    if suffix == ".gmt":
        return _read_gmt(source)
    if suffix not in (".yaml", ".yml"):
        raise UserInputError(
            f"gene-signature library {str(source)!r}: unknown file type {suffix!r}; use a YAML "
            "library (.yaml/.yml, format of config/signatures.yaml) or a GMT file (.gmt)"
        )
    content = read_yaml(source, what="gene-signature library", hint="")
    library = validate_gene_sets(content, origin=str(source))
    library["source"] = str(source)
    return library


def _read_gmt(source: Path) -> dict[str, Any]:
    where = f"gene-signature library {str(source)!r}"
    sets: dict[str, dict[str, Any]] = {}
    with open(source, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            fields = [f.strip() for f in line.rstrip("\r\n").split("\t")]
            name = fields[0]
            genes = [g for g in fields[2:] if g]
            if len(fields) < 3 or not genes:
                raise UserInputError(
                    f"{where}, line {number}: set {name!r} has no genes; a GMT line is "
                    "name<TAB>description<TAB>gene<TAB>gene... (tab-separated)"
                )
            _check_set_name(name, where=f"{where}, line {number}")
            if name in sets:
                raise UserInputError(
                    f"{where}, line {number}: set {name!r} appears twice; give each set one line"
                )
            sets[name] = {
                "genes": list(dict.fromkeys(genes)),
                "category": "user",
                "expected_direction": None,
                "cell_types": None,
                "role": "biological",
                "citations": [fields[1]] if fields[1] else [],
                "notes": "",
                "contested": False,
            }
    if not sets:
        raise UserInputError(f"{where} holds no gene set; add lines name<TAB>description<TAB>genes")
    return {
        "version": "gmt",
        "species": None,
        "description": f"gene sets read from {source.name}",
        "source": str(source),
        "gene_sets": sets,
    }


def _check_set_name(name: Any, *, where: str) -> None:
    check_safe_name(name, what=f"{where}: gene-set name")
    if name in DERIVED_SCORES:
        raise UserInputError(
            f"{where}: gene-set name {name!r} is reserved for the score the workflow computes "
            "itself; rename the set"
        )


def validate_gene_sets(content: Any, *, origin: str = "gene-signature library") -> dict[str, Any]:
    """Validate a library already read into Python objects (format: see `load_gene_sets`).

    Parameters
    ----------
    content
        The parsed YAML document (or a library dict returned by `load_gene_sets`).
    origin
        Where it came from, quoted in error messages (a file path).

    Returns
    -------
    dict
        The normalised library, as returned by `load_gene_sets` (``source`` = `origin`).
    """
    where = f"gene-signature library {origin!r}"
    if isinstance(content, Mapping):
        content = {k: v for k, v in content.items() if k != "source"}
    header = validate_header(
        content,
        where=where,
        keys=LIBRARY_KEYS,
        required=REQUIRED_LIBRARY_KEYS,
        entries_key="gene_sets",
        entries_hint=f"set names to entries with {list(REQUIRED_SET_KEYS)}",
        example="config/signatures.yaml",
    )
    gene_sets = header["entries"]
    entries = {}
    for name, entry in gene_sets.items():
        _check_set_name(name, where=where)
        entries[str(name)] = _validate_set(str(name), entry, where=where)
    return {
        "version": header["version"],
        "species": header["species"],
        "description": header["description"],
        "source": origin,
        "gene_sets": entries,
    }


def _string_list(values: Any) -> bool:
    return isinstance(values, list) and all(isinstance(v, str) and v.strip() for v in values)


def _validate_set(name: str, entry: Any, *, where: str) -> dict[str, Any]:
    """One set's entry checked field by field, normalised (all :data:`SET_KEYS`)."""
    _check_set_fields(name, entry, where=where)
    genes = entry["genes"]
    if not _string_list(genes) or not genes:
        raise UserInputError(
            f"{where}: gene set {name!r} field 'genes' must be a non-empty list of gene symbols; "
            f"got {genes!r}"
        )
    direction = _check_set_labels(name, entry, where=where)
    cell_types = entry.get("cell_types")
    if cell_types is not None and (not _string_list(cell_types) or not cell_types):
        raise UserInputError(
            f"{where}: gene set {name!r} field 'cell_types' must be null (all cell types) or a "
            f"non-empty list of cell-type names; got {cell_types!r}"
        )
    citations = entry["citations"]
    if citations is None:
        citations = []
    if not _string_list(citations):
        raise UserInputError(
            f"{where}: gene set {name!r} field 'citations' must be a list of citations "
            f"(author, year, journal, DOI); got {citations!r}"
        )
    if direction is not None and not citations:
        raise UserInputError(
            f"{where}: gene set {name!r} expects {direction!r} but cites no source; add the "
            "publication(s) behind the expectation to 'citations' or set expected_direction to "
            "null"
        )
    notes = entry.get("notes") or ""
    if not isinstance(notes, str):
        raise UserInputError(f"{where}: gene set {name!r} field 'notes' must be a string")
    contested = _check_contested(name, entry, direction, where=where)
    return {
        "genes": list(dict.fromkeys(g.strip() for g in genes)),
        "category": entry["category"],
        "expected_direction": direction,
        "cell_types": None if cell_types is None else [c.strip() for c in cell_types],
        "role": entry["role"],
        "citations": [c.strip() for c in citations],
        "notes": " ".join(notes.split()),
        "contested": contested,
    }


def _check_contested(
    name: str, entry: Mapping[str, Any], direction: str | None, *, where: str
) -> bool:
    """The optional ``contested`` flag: a boolean, true only on a set expecting 'conflicting'."""
    contested = entry.get("contested", False)
    if not isinstance(contested, bool):
        raise UserInputError(
            f"{where}: gene set {name!r} field 'contested' must be true or false; got {contested!r}"
        )
    if contested and direction != "conflicting":
        raise UserInputError(
            f"{where}: gene set {name!r} is marked contested but expects {direction!r}; a "
            "contested set holds genes whose published direction conflicts: set "
            "expected_direction to 'conflicting' or remove 'contested'"
        )
    return contested


def contested_overlaps(library: Mapping[str, Any]) -> list[str]:
    """Genes of a contested set that also sit in a set expecting 'up' or 'down' in a shared cell
    type, one line each (empty when the library keeps contested genes apart).

    The curated library's rule: where only some genes of a programme are contested they form
    their own set (``contested: true``), so the uncontested expectation can still be tested.
    """
    sets = library_sets(library)
    problems = []
    for name, entry in sets.items():
        if not entry["contested"]:
            continue
        for other, candidate in sets.items():
            if other == name or candidate["expected_direction"] not in ("up", "down"):
                continue
            shared = _shared_cell_types(entry["cell_types"], candidate["cell_types"])
            genes = [g for g in entry["genes"] if g in candidate["genes"]]
            if genes and shared:
                problems.append(
                    f"contested gene(s) {genes} of set {name!r} also in set {other!r}, which "
                    f"expects {candidate['expected_direction']!r} in {shared}"
                )
    return problems


def _shared_cell_types(first: Sequence[str] | None, second: Sequence[str] | None) -> list[str]:
    """Cell types two sets' claims share (None = all cell types)."""
    if first is None and second is None:
        return ["all cell types"]
    if first is None or second is None:
        return list(second if first is None else first)
    return [c for c in first if c in second]


def _check_set_fields(name: str, entry: Any, *, where: str) -> None:
    """A mapping with every required field and no unknown one."""
    check_entry_fields(
        entry,
        kind="gene set",
        name=name,
        where=where,
        allowed=SET_KEYS,
        required=REQUIRED_SET_KEYS,
        hint=" (expected_direction may be null)",
    )


def _check_set_labels(name: str, entry: Mapping[str, Any], *, where: str) -> str | None:
    """Category, expected direction and role from their closed sets; returns the direction."""
    category = entry["category"]
    if category not in CATEGORIES:
        raise UserInputError(
            f"{where}: gene set {name!r} field 'category' is {category!r}; use one of "
            f"{list(CATEGORIES)}"
        )
    direction = entry["expected_direction"]
    if direction is not None and direction not in DIRECTIONS:
        raise UserInputError(
            f"{where}: gene set {name!r} field 'expected_direction' is {direction!r}; use one of "
            f"{list(DIRECTIONS)} or null (no published claim)"
        )
    role = entry["role"]
    if role not in ROLES:
        raise UserInputError(
            f"{where}: gene set {name!r} field 'role' is {role!r}; use one of {list(ROLES)}"
        )
    if role == "control" and direction is not None:
        raise UserInputError(
            f"{where}: gene set {name!r} is a control but has expected_direction {direction!r}; "
            "a control carries no biological expectation: set expected_direction to null"
        )
    return direction


def merge_gene_sets(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Extend or override a library with a user's own sets.

    Parameters
    ----------
    base
        The curated library (from `load_gene_sets`).
    extra
        A user library (YAML or GMT, from `load_gene_sets`). A set whose name is in `base`
        replaces that set whole; other sets are added after the base's.

    Returns
    -------
    dict
        The merged library; its version is ``"<base version>+<extra version>"`` so results record
        that the curated library was modified.
    """
    base = validate_gene_sets(dict(base), origin=str(base.get("source", "base library")))
    extra = validate_gene_sets(dict(extra), origin=str(extra.get("source", "extra library")))
    merged = merge_resources(base, extra, entries_key="gene_sets", what="gene-signature library")
    merged["source"] = f"{base['source']}+{extra['source']}"
    return merged


def load_library(
    path: str | os.PathLike[str], extra_paths: Sequence[str | os.PathLike[str]] = ()
) -> dict[str, Any]:
    """The shipped library with the user's YAML or GMT files merged in, in the order given."""
    library = load_gene_sets(path)
    for extra in extra_paths:
        library = merge_gene_sets(library, load_gene_sets(extra))
    for problem in contested_overlaps(library):
        log.warning("gene-signature library %s: %s", library["source"], problem)
    return library


def gene_lists(library: Mapping[str, Any]) -> dict[str, list[str]]:
    """Set name -> genes, for tests that need only the gene lists (enrichment)."""
    return {name: list(entry["genes"]) for name, entry in library_sets(library).items()}


def library_sets(library: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The library's sets, validated, from a full library or a bare ``{name: entry}`` mapping."""
    if "gene_sets" in library and isinstance(library["gene_sets"], Mapping):
        return validate_gene_sets(dict(library), origin=str(library.get("source", "library")))[
            "gene_sets"
        ]
    return validate_gene_sets(
        {"version": "unversioned", "gene_sets": dict(library)}, origin="library"
    )["gene_sets"]


def set_metadata(library: Mapping[str, Any], name: str) -> dict[str, Any]:
    """A set's entry, or the metadata of a derived score (potency), or a neutral entry."""
    sets = library_sets(library)
    if name in sets:
        return sets[name]
    if name in DERIVED_SCORES:
        return DERIVED_SCORES[name]
    return {
        "genes": [],
        "category": "user",
        "expected_direction": None,
        "cell_types": None,
        "role": "biological",
        "citations": [],
        "notes": "",
        "contested": False,
    }


def expectation_for(entry: Mapping[str, Any], cell_type: str) -> str | None:
    """The set's expected direction in `cell_type`, or None where the claim does not apply."""
    cell_types = entry.get("cell_types")
    if cell_types is not None and cell_type not in cell_types:
        return None
    return entry.get("expected_direction")


def prespecified_sets(library: Mapping[str, Any], cell_type: str) -> set[str]:
    """The sets the library expects to change in `cell_type` (any direction, conflicting too).

    The pre-specified family of every donor-level table: signature tests, DE genes
    (:func:`cordatlas.compare.deseq2.prespecified_genes`, the genes of these sets), enrichment.
    """
    return {
        name
        for name, entry in library_sets(library).items()
        if str(expectation_for(entry, cell_type) or "") not in ("", "none")
    }
