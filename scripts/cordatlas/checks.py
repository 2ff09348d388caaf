"""Checks shared by every stage: the contrast, required columns, safe names (one message each)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from cordatlas.errors import UserInputError
from cordatlas.vocabulary import SAFE_NAME, SAFE_NAME_PATTERN


def check_contrast(contrast: Sequence[object]) -> tuple[str, str]:
    """The contrast as ``(condition, reference)`` strings; refuse anything but two different ones."""
    if isinstance(contrast, str) or len(contrast) != 2 or str(contrast[0]) == str(contrast[1]):
        raise UserInputError(
            f"contrast must be two different conditions (condition, reference), got "
            f"{contrast!r}; fix contrast in the config."
        )
    return str(contrast[0]), str(contrast[1])


def require_columns(
    columns: Iterable[object], needed: Iterable[str], *, table: str, fix: str
) -> None:
    """Refuse a table (obs, a results TSV) that lacks any of the `needed` columns.

    `table` names it in the message and `fix` says how to make a table that has them.
    """
    present = {str(c) for c in columns}
    missing = [c for c in needed if c not in present]
    if missing:
        raise UserInputError(f"{table} lacks column(s) {missing}; {fix}")


def is_safe_name(name: object) -> bool:
    """Whether `name` can be a file name and wildcard value (see vocabulary.SAFE_NAME)."""
    return isinstance(name, str) and SAFE_NAME.match(name) is not None


def check_safe_name(name: object, *, what: str) -> str:
    """Return `name`, or refuse it with a message naming `what` it is and the allowed pattern."""
    if not is_safe_name(name):
        raise UserInputError(
            f"{what} {name!r} is not a valid name: use letters, digits, '_', '.' or '-', "
            f"starting with a letter or digit (pattern {SAFE_NAME_PATTERN})"
        )
    return str(name)
