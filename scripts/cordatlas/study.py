"""Where a study's outputs live, so that runs on different sample sheets never mix.

Light by design (standard library only): the Snakefile imports it while parsing.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from cordatlas.checks import check_safe_name
from cordatlas.errors import UserInputError

#: Folder holding every study but the embedded demo (whose outputs stay at the top level).
STUDIES_FOLDER = "studies"


def study_dir(configured: str | None, *, sheet: str, demo_only: bool) -> str:
    """The folder a study's ``results/``, ``logs/`` and ``benchmarks/`` go under.

    Parameters
    ----------
    configured
        config ``study_dir`` (None: derive it).
    sheet
        The sample sheet's path (config ``samples``).
    demo_only
        Whether every row of the sheet is a file the simulator writes (the embedded demo).

    Returns
    -------
    ``"."`` for the demo (its paths stay ``results/atlas.h5ad`` ...), the configured folder, or
    ``studies/<sheet file name without suffix>``: a second sheet run in the same folder never
    reads, lists or reports the demo's files, nor another sheet's. The top level (``"."``) is
    the demo's alone: a sheet with other samples is refused there, so ``"."`` always means
    the data are synthetic.
    """
    if configured and str(PurePosixPath(configured)) != ".":
        return str(PurePosixPath(configured))
    if demo_only:
        return "."
    if configured:
        raise UserInputError(
            f"config study_dir: {configured!r} (the top level) is the embedded demo's folder; "
            f"sample sheet {sheet!r} holds other samples, so give the study its own folder "
            "(or leave study_dir null for studies/<sheet name>)"
        )
    name = PurePosixPath(sheet).name.split(".")[0]
    check_safe_name(name, what=f"sample sheet {sheet!r}: its file name (set config study_dir)")
    return str(PurePosixPath(STUDIES_FOLDER) / name)


def in_study(folder: str, path: str) -> str:
    """`path` (``results/...``, ``logs/...``, ``benchmarks/...``) inside the study's folder."""
    return path if folder in ("", ".") else str(PurePosixPath(folder) / path)
