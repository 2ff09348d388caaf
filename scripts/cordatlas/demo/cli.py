"""Command line ``cordatlas-simulate``: simulate a study and write the samples of a sheet."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from cordatlas.demo.realistic import STRESS_MODES
from cordatlas.demo.simulate import REALISM_LEVELS
from cordatlas.demo.write import write_demo
from cordatlas.errors import UserInputError
from cordatlas.params import Contrast, DemoParams

__all__ = ["main"]

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
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
    parser.add_argument(
        "--realism",
        choices=REALISM_LEVELS,
        default="realistic",
        help="realistic (default: ambient RNA, T-cell continuum, donor effects, stress, ...) "
        "or simple (the original, faster simulator)",
    )
    parser.add_argument(
        "--stress",
        choices=STRESS_MODES,
        default="independent",
        help="realistic only: stress half of each condition's donors (independent, default) "
        "or every donor of the condition (with_condition)",
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
    return parser


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
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # paths in the sheet are written as given, relative to the working directory
    demo = DemoParams(
        outdir=".",
        seed=args.seed,
        n_cells_per_sample=args.cells_per_sample,
        n_genes=args.genes,
        condition_effect=not args.no_condition_effect,
        realism=args.realism,
        stress=args.stress,
    )
    try:
        sheet = Path(args.samples)
        if not sheet.is_file():
            raise UserInputError(f"sample sheet {sheet} not found; pass an existing TSV.")
        samples = pd.read_csv(sheet, sep="\t", dtype=str, keep_default_na=False)
        study = write_demo(
            samples,
            demo,
            Contrast(*args.contrast),
            truth_dir=args.truth_dir,
            damaged_rate=args.damaged_rate,
            low_count_rate=args.low_count_rate,
            doublet_rate=args.doublet_rate,
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
