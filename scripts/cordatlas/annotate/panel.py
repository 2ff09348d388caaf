"""The marker panel: reading, validating and merging the cited YAML of cell types and their markers."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cordatlas.errors import UserInputError
from cordatlas.genesets.curated import (
    check_entry_fields,
    merge_resources,
    read_yaml,
    validate_header,
)
from cordatlas.vocabulary import SAFE_NAME, UNASSIGNED

__all__ = [
    "ENTRY_KEYS",
    "LINEAGE_KEYS",
    "LINEAGE_SUFFIX",
    "PANEL_KEYS",
    "UNASSIGNED",
    "cell_type_entries",
    "lineage_entries",
    "load_panel",
    "merge_panels",
    "validate_panel",
]

#: Keys of a panel file and of each of its entries (unknown keys are errors, not ignored).
PANEL_KEYS = ("version", "species", "description", "lineages", "cell_types")
REQUIRED_PANEL_KEYS = ("version", "cell_types")
ENTRY_KEYS = ("description", "lineage", "markers", "sources")
REQUIRED_ENTRY_KEYS = ("markers", "sources")
#: Fields of a ``lineages`` entry: the genes shared by the lineage's cell types.
LINEAGE_KEYS = ("description", "markers", "sources")
#: Lineage labels are ``{lineage}_lineage``; no cell type may end so.
LINEAGE_SUFFIX = "_lineage"


def load_panel(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a marker-panel YAML file.

    Parameters
    ----------
    path
        YAML with ``version``, optional ``species`` and ``description``, and ``cell_types``:
        a mapping of names to entries with ``markers`` (non-empty list of gene symbols),
        ``sources`` (non-empty list of citations) and optional ``description`` and ``lineage``;
        optional ``lineages``: a mapping of lineage names (the values of the entries'
        ``lineage``) to entries with ``markers``, ``sources`` and optional ``description``,
        the genes the lineage's cell types share, which name a cluster's lineage when its
        subtype is unclear.

    Returns
    -------
    dict
        ``{"version": str, "species": str | None, "description": str, "lineages": {name:
        {"description": str, "markers": list[str], "sources": list[str]}}, "cell_types": {name:
        {"description": str, "lineage": str, "markers": list[str], "sources": list[str]}}}``,
        entries in file order, duplicate markers within an entry removed (``lineages`` empty
        when the file has none).

    Raises
    ------
    UserInputError
        The file is missing, not YAML, or an entry or field is invalid (the message names the
        file, the entry and the field).
    """
    source = Path(path)
    content = read_yaml(
        source,
        what="marker panel",
        hint="set annotation.panel (or annotation.extra_panel) to an existing YAML file such as "
        "config/marker_panel.yaml",
    )
    return validate_panel(content, origin=str(source))


def validate_panel(content: Any, *, origin: str = "marker panel") -> dict[str, Any]:
    """Validate a panel already read into Python objects (see `load_panel` for the format).

    Parameters
    ----------
    content
        The parsed YAML document.
    origin
        Where it came from, quoted in error messages (a file path).

    Returns
    -------
    dict
        The normalised panel, as returned by `load_panel`.
    """
    where = f"marker panel {origin!r}"
    header = validate_header(
        content,
        where=where,
        keys=PANEL_KEYS,
        required=REQUIRED_PANEL_KEYS,
        entries_key="cell_types",
        entries_hint="cell-type names to entries with 'markers' and 'sources'",
        example="config/marker_panel.yaml",
    )
    cell_types = header["entries"]
    entries = {}
    for name, entry in cell_types.items():
        entries[str(name)] = _validate_entry(name, entry, where=where)
    return {
        "version": header["version"],
        "species": header["species"],
        "description": header["description"],
        "lineages": _validate_lineages(content.get("lineages"), where=where),
        "cell_types": entries,
    }


def _validate_lineages(lineages: Any, *, where: str) -> dict[str, dict[str, Any]]:
    """The panel's ``lineages`` section, validated like cell-type entries (``{}`` when absent)."""
    if lineages is None:
        return {}
    if not isinstance(lineages, Mapping):
        raise UserInputError(
            f"{where}: 'lineages' must be a mapping of lineage names (the entries' 'lineage') "
            f"to entries with 'markers' and 'sources'; got {type(lineages).__name__}"
        )
    clean = {}
    for name, entry in lineages.items():
        _check_name(name, where=where, kind="lineage")
        check_entry_fields(
            entry,
            kind="lineage",
            name=name,
            where=where,
            allowed=LINEAGE_KEYS,
            required=REQUIRED_ENTRY_KEYS,
        )
        lists = {f: _string_list(entry[f], field=f, name=name, where=where, kind="lineage")
                 for f in REQUIRED_ENTRY_KEYS}  # fmt: skip
        clean[str(name)] = {"description": str(entry.get("description", "")).strip(), **lists}
    return clean


def _check_name(name: Any, *, where: str, kind: str) -> None:
    """A cell-type or lineage name: a safe name, and never the reserved ``unassigned``."""
    if not isinstance(name, str) or not SAFE_NAME.match(name):
        raise UserInputError(
            f"{where}: {kind} name {name!r} is not allowed; use letters, digits, '_', '.' "
            "and '-', starting with a letter or digit (e.g. 'CD4_naive')"
        )
    if name == UNASSIGNED:
        raise UserInputError(
            f"{where}: {kind} name {UNASSIGNED!r} is reserved for clusters the panel cannot "
            "name; rename the entry"
        )
    if kind == "cell type" and name.endswith(LINEAGE_SUFFIX):
        raise UserInputError(
            f"{where}: cell type name {name!r} ends in {LINEAGE_SUFFIX!r}, which is reserved "
            "for lineage labels; rename the entry (or add it under 'lineages')"
        )


def _string_list(values: Any, *, field: str, name: str, where: str, kind: str) -> list[str]:
    """A non-empty list of non-empty strings (markers or sources), stripped and deduplicated."""
    if (
        not isinstance(values, list)
        or not values
        or not all(isinstance(v, str) and v.strip() for v in values)
    ):
        what = "gene symbols" if field == "markers" else "citations (author, year, journal)"
        raise UserInputError(
            f"{where}: {kind} {name!r} field {field!r} must be a non-empty list of "
            f"non-empty strings ({what}); got {values!r}"
        )
    return list(dict.fromkeys(v.strip() for v in values))


def _validate_entry(name: Any, entry: Any, *, where: str) -> dict[str, Any]:
    """One validated, normalised panel entry; errors name the entry and the field."""
    _check_name(name, where=where, kind="cell type")
    check_entry_fields(
        entry,
        kind="cell type",
        name=name,
        where=where,
        allowed=ENTRY_KEYS,
        required=REQUIRED_ENTRY_KEYS,
    )
    clean = {
        field: _string_list(entry[field], field=field, name=name, where=where, kind="cell type")
        for field in REQUIRED_ENTRY_KEYS
    }
    for field in ("description", "lineage"):
        if field in entry and not isinstance(entry[field], str):
            raise UserInputError(
                f"{where}: cell type {name!r} field {field!r} must be a string, got "
                f"{entry[field]!r}"
            )
    return {
        "description": str(entry.get("description", "")).strip(),
        "lineage": str(entry.get("lineage", "")).strip(),
        "markers": clean["markers"],
        "sources": clean["sources"],
    }


def merge_panels(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Extend or override a panel with a user's own entries.

    Parameters
    ----------
    base
        The curated panel (from `load_panel`).
    extra
        A user panel in the same format. An entry whose name is in `base` replaces that entry
        whole (markers, sources and all); other entries are added after the base's.

    Returns
    -------
    dict
        The merged panel; its version is ``"<base version>+<extra version>"`` so results record
        that the curated panel was modified.

    Raises
    ------
    UserInputError
        The two panels declare different species.
    """
    base = validate_panel(dict(base), origin="base panel")
    extra = validate_panel(dict(extra), origin="extra panel")
    merged = merge_resources(base, extra, entries_key="cell_types", what="marker panel")
    merged["lineages"] = {**base["lineages"], **extra["lineages"]}
    return {key: merged[key] for key in ("version", "species", "description", "lineages",
                                         "cell_types")}  # fmt: skip


def cell_type_entries(panel: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The panel's validated entries, from a full panel or a bare ``{name: entry}`` mapping."""
    if "cell_types" in panel and isinstance(panel["cell_types"], Mapping):
        return validate_panel(dict(panel), origin="panel")["cell_types"]
    return validate_panel({"version": "unversioned", "cell_types": dict(panel)}, origin="panel")[
        "cell_types"
    ]


def lineage_entries(panel: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The panel's validated ``lineages`` (``{}`` for a bare ``{name: entry}`` mapping or none)."""
    if "cell_types" in panel and isinstance(panel["cell_types"], Mapping):
        return validate_panel(dict(panel), origin="panel")["lineages"]
    return {}
