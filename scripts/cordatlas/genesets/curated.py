"""The project's curated, versioned YAML resources (marker panel, signature library): reading and the shared header checks."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from cordatlas.errors import UserInputError

log = logging.getLogger(__name__)


def read_yaml(path: str | os.PathLike[str], *, what: str, hint: str) -> Any:
    """Parse a YAML resource; a missing file or invalid YAML is one clear error.

    Parameters
    ----------
    what
        What the file is, for messages ("marker panel").
    hint
        What to do when the file is missing (which config key to set, an example file).
    """
    source = Path(path)
    if not source.is_file():
        raise UserInputError(f"{what} {str(source)!r} not found; {hint}")
    try:
        with open(source) as handle:
            return yaml.safe_load(handle)
    except yaml.YAMLError as err:
        raise UserInputError(f"{what} {str(source)!r} is not valid YAML: {err}") from None


def validate_header(
    content: Any,
    *,
    where: str,
    keys: Sequence[str],
    required: Sequence[str],
    entries_key: str,
    entries_hint: str,
    example: str,
) -> dict[str, Any]:
    """Check the top level of a curated resource: known keys, version, species, description, entries.

    Returns ``{"version": str, "species": str | None, "description": str, "entries": mapping}``;
    the entries (under `entries_key`) are left for the caller to validate one by one.
    """
    if not isinstance(content, Mapping):
        raise UserInputError(
            f"{where}: expected a mapping with keys {list(keys)}, got "
            f"{type(content).__name__}; see {example} for the format"
        )
    unknown = sorted(set(map(str, content)) - set(keys))
    if unknown:
        raise UserInputError(
            f"{where}: unknown top-level key(s) {unknown}; allowed keys are {list(keys)}"
        )
    for key in required:
        if key not in content or content[key] is None or str(content[key]).strip() == "":
            raise UserInputError(f"{where}: top-level field {key!r} is missing; add it")
    version = content["version"]
    if not isinstance(version, str | int | float) or isinstance(version, bool):
        raise UserInputError(f"{where}: 'version' must be a string such as \"2026.11.1\"")
    species = content.get("species")
    if species is not None and not isinstance(species, str):
        raise UserInputError(f"{where}: 'species' must be a string such as 'human'")
    description = content.get("description") or ""
    if not isinstance(description, str):
        raise UserInputError(f"{where}: 'description' must be a string")
    entries = content[entries_key]
    if not isinstance(entries, Mapping) or not entries:
        raise UserInputError(
            f"{where}: {entries_key!r} must be a non-empty mapping of {entries_hint}"
        )
    return {
        "version": str(version),
        "species": species,
        "description": description.strip(),
        "entries": entries,
    }


def merge_resources(
    base: Mapping[str, Any], extra: Mapping[str, Any], *, entries_key: str, what: str
) -> dict[str, Any]:
    """A validated resource extended by a user's: same-named entries replaced, new ones appended.

    The version becomes ``"<base>+<extra>"`` so every result records that the curated resource
    was modified; species must agree.
    """
    if base["species"] and extra["species"] and base["species"] != extra["species"]:
        raise UserInputError(
            f"extra {what}: species {extra['species']!r} differs from the base {what}'s "
            f"{base['species']!r}; use one for the same species"
        )
    replaced = [n for n in extra[entries_key] if n in base[entries_key]]
    added = [n for n in extra[entries_key] if n not in base[entries_key]]
    log.info("extra %s replaces %s and adds %s", what, replaced, added)
    return {
        "version": f"{base['version']}+{extra['version']}",
        "species": base["species"] or extra["species"],
        "description": base["description"],
        entries_key: {**base[entries_key], **extra[entries_key]},
    }


def check_entry_fields(
    entry: Any,
    *,
    kind: str,
    name: str,
    where: str,
    allowed: Sequence[str],
    required: Sequence[str],
    hint: str = "",
) -> None:
    """One entry of a curated resource (a panel cell type, a gene set): a mapping with every
    `required` field and no field outside `allowed`. `kind` names it in the message."""
    if not isinstance(entry, Mapping):
        raise UserInputError(
            f"{where}: {kind} {name!r} must be a mapping with {list(required)}, got "
            f"{type(entry).__name__}"
        )
    unknown = sorted(set(map(str, entry)) - set(allowed))
    if unknown:
        raise UserInputError(
            f"{where}: {kind} {name!r} has unknown field(s) {unknown}; allowed fields are "
            f"{list(allowed)}"
        )
    missing = [k for k in required if k not in entry]
    if missing:
        raise UserInputError(
            f"{where}: {kind} {name!r} lacks field(s) {missing}; every {kind} needs "
            f"{list(required)}{hint}"
        )
