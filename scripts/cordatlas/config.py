"""Validate the workflow config and sample sheet against their JSON schemas, with precise errors."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pandas as pd
import yaml

from cordatlas.errors import UserInputError

#: Sample-sheet columns holding numbers (fixed QC thresholds); every other column is text.
NUMERIC_SAMPLE_COLUMNS = ("min_counts", "max_counts", "min_genes", "max_genes", "max_pct_counts_mt")

#: Sample metadata carried into every cell's obs (missing optional values become "unknown").
METADATA_COLUMNS = (
    "donor",
    "condition",
    "tissue",
    "study",
    "technology",
    "sex",
    "sorted_fraction",
)


def read_schema(path: str | Path) -> dict[str, Any]:
    """Read a YAML JSON-schema file."""
    with open(path) as handle:
        return yaml.safe_load(handle)


def _with_defaults(instance: Any, schema: Mapping[str, Any]) -> Any:
    """Return a copy of `instance` with schema defaults filled in, recursively for objects."""
    if schema.get("type") != "object" or not isinstance(instance, dict):
        return instance
    filled = copy.deepcopy(instance)
    for key, sub in schema.get("properties", {}).items():
        if key not in filled and "default" in sub:
            filled[key] = copy.deepcopy(sub["default"])
        if key in filled:
            filled[key] = _with_defaults(filled[key], sub)
    return filled


#: What the schema's string patterns mean, for the one-line error: names become file names and
#: obs columns; no string may hold characters that are markup in an HTML report (< > " `),
#: backslashes (paths and names) or control characters (line breaks would start reST blocks).
PATTERN_MEANINGS = {
    r"^[A-Za-z0-9][A-Za-z0-9_.-]*$": (
        "is not a valid name; use letters, digits, '_', '.' and '-', starting with a letter or "
        "digit"
    ),
    r'^[^<>"`\\\x00-\x1f]*$': (
        "holds a character this workflow refuses in paths and prefixes (< > \" ` backslash or a "
        "control character: they would be markup in the HTML reports); rename the file or folder"
    ),
    r'^[^<>"`\x00-\x1f]*$': (
        "holds a character this workflow refuses in patterns (< > \" ` or a control character: "
        "they would be markup in the HTML reports)"
    ),
    r'^[^<>"`\\\x00-\x1f]*\.(ya?ml|gmt)$': (
        "must be a .yaml, .yml or .gmt file whose path holds none of < > \" ` backslash or "
        "control characters (they would be markup in the HTML reports)"
    ),
}


def _describe(error: jsonschema.ValidationError, schema: Mapping[str, Any]) -> str:
    """One line for a schema error: where, what is wrong, what is allowed."""
    where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    sub = error.schema if isinstance(error.schema, Mapping) else {}
    if error.validator == "additionalProperties":
        allowed = sorted(sub.get("properties", {}))
        extra = (
            sorted(set(error.instance) - set(allowed)) if isinstance(error.instance, dict) else []
        )
        return f"{where}: unknown key(s) {extra}; allowed keys are {allowed}"
    if error.validator == "enum":
        return (
            f"{where}: {error.instance!r} is not allowed; use one of {list(error.validator_value)}"
        )
    if error.validator == "pattern" and error.validator_value in PATTERN_MEANINGS:
        return f"{where}: {error.instance!r} {PATTERN_MEANINGS[error.validator_value]}"
    message = f"{where}: {error.message}"
    if sub.get("description"):
        message += f" ({sub['description']})"
    return message


def validate_config(config: Mapping[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """Fill defaults and validate the workflow config.

    Parameters
    ----------
    config
        The config as Snakemake loaded it (config.yaml plus --config overrides).
    schema
        The JSON schema (workflow/schemas/config.schema.yaml).

    Returns
    -------
    The config with defaults filled in.

    Raises
    ------
    UserInputError
        Naming every offending key, what is wrong and what is allowed.
    """
    filled = _with_defaults(dict(config), schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(filled), key=lambda e: list(e.absolute_path))
    if errors:
        lines = "\n".join(f"  - {_describe(e, schema)}" for e in errors)
        raise UserInputError(f"config is invalid:\n{lines}")
    atlas = filled["atlas"]
    if atlas["working_resolution"] not in atlas["leiden_resolutions"]:
        raise UserInputError(
            f"config atlas.working_resolution: {atlas['working_resolution']} is not among "
            f"atlas.leiden_resolutions {atlas['leiden_resolutions']}; add it there or pick one of them"
        )
    if filled["contrast"]["condition"] == filled["contrast"]["reference"]:
        raise UserInputError(
            "config contrast: condition and reference are both "
            f"{filled['contrast']['condition']!r}; they must be two different groups"
        )
    for key in ("hb_pattern",):
        _check_regex(filled["qc"][key], where=f"config qc.{key}")
    return filled


def _check_regex(pattern: str, *, where: str) -> None:
    try:
        re.compile(pattern)
    except re.error as err:
        raise UserInputError(
            f"{where}: {pattern!r} is not a valid regular expression ({err})"
        ) from None


def read_samples(
    path: str | Path,
    schema: Mapping[str, Any],
    *,
    contrast: Mapping[str, str],
) -> pd.DataFrame:
    """Read and validate the sample sheet.

    Parameters
    ----------
    path
        TSV with one row per sample.
    schema
        JSON schema of one row (workflow/schemas/samples.schema.yaml).
    contrast
        The config's contrast: every `condition` must be one of its two levels, and both must occur.

    Returns
    -------
    One row per sample, indexed by `sample`; empty cells are NA, numeric columns are floats.

    Raises
    ------
    UserInputError
        Naming the file, the row (line number and sample), the column and what is allowed.
    """
    path = Path(path)
    table = _read_sheet(path, schema)
    validator = jsonschema.Draft202012Validator(schema)
    levels = (contrast["condition"], contrast["reference"])
    records = []
    for i, row in table.iterrows():
        line = i + 2  # header is line 1
        record: dict[str, Any] = {k: v.strip() for k, v in row.items() if v.strip() != ""}
        label = f"sample sheet {path} line {line} (sample {record.get('sample', '?')!r})"
        records.append(_check_record(record, label, validator, schema, levels))
    samples = pd.DataFrame.from_records(records)
    _check_sheet(samples, path, levels)
    for column in schema["properties"]:
        if column not in samples:
            samples[column] = pd.NA
    return samples.set_index("sample", drop=False)[list(schema["properties"])]


def _read_sheet(path: Path, schema: Mapping[str, Any]) -> pd.DataFrame:
    """The sheet as text cells, refused when missing, empty or with unknown columns."""
    if not path.is_file():
        raise UserInputError(
            f"sample sheet {path} not found; set config key `samples` to an existing TSV "
            "(see config/README.md)"
        )
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, comment=None)
    table.columns = [c.strip() for c in table.columns]
    if table.empty:
        raise UserInputError(f"sample sheet {path} has no rows; add one row per sample")
    allowed = set(schema["properties"])
    unknown = [c for c in table.columns if c not in allowed]
    if unknown:
        raise UserInputError(
            f"sample sheet {path}: unknown column(s) {unknown}; allowed columns are {sorted(allowed)}"
        )
    return table


def _check_record(
    record: dict[str, Any],
    label: str,
    validator: jsonschema.Draft202012Validator,
    schema: Mapping[str, Any],
    levels: tuple[str, str],
) -> dict[str, Any]:
    """One row's values, numbers parsed, checked against the schema and the contrast."""
    for column in NUMERIC_SAMPLE_COLUMNS:
        if column in record:
            try:
                record[column] = float(record[column])
            except ValueError:
                raise UserInputError(
                    f"{label}, column {column!r}: {record[column]!r} is not a number"
                ) from None
    errors = sorted(validator.iter_errors(record), key=lambda e: list(e.absolute_path))
    if errors:
        raise _record_error(errors[0], record, label, schema)
    if ("path" in record) == ("url" in record):
        raise UserInputError(
            f"{label}: give exactly one of `path` or `url` (found "
            f"{'both' if 'path' in record else 'neither'})"
        )
    if "sha256" in record and "url" not in record:
        raise UserInputError(f"{label}: `sha256` is set but `url` is not; sha256 checks downloads")
    if "barcode_pattern" in record:
        _check_regex(record["barcode_pattern"], where=f"{label}, column 'barcode_pattern'")
    if record["condition"] not in levels:
        raise UserInputError(
            f"{label}, column 'condition': {record['condition']!r} is not one of the contrast "
            f"levels {list(levels)} set in config `contrast`; fix the value or the config"
        )
    return record


def _record_error(
    error: jsonschema.ValidationError,
    record: Mapping[str, Any],
    label: str,
    schema: Mapping[str, Any],
) -> UserInputError:
    """The message for a row's first schema error: which column, what is allowed."""
    column = ".".join(str(p) for p in error.absolute_path)
    sub = error.schema if isinstance(error.schema, Mapping) else {}
    if error.validator == "required":
        missing = sorted(set(schema["required"]) - set(record))
        return UserInputError(
            f"{label}: required column(s) {missing} empty or absent; "
            "fill them in (see config/README.md)"
        )
    if error.validator == "enum":
        return UserInputError(
            f"{label}, column {column!r}: {error.instance!r} is not allowed; "
            f"use one of {list(error.validator_value)}"
        )
    if error.validator == "pattern":
        return UserInputError(
            f"{label}, column {column!r}: {error.instance!r} does not match "
            f"{error.validator_value!r} ({sub.get('description', '')})"
        )
    return UserInputError(f"{label}, column {column!r}: {error.message}")


def _check_sheet(samples: pd.DataFrame, path: Path, levels: tuple[str, str]) -> None:
    """Checks across rows: duplicated ids, pooled files, both contrast levels."""
    duplicated = samples["sample"][samples["sample"].duplicated()].unique().tolist()
    if duplicated:
        raise UserInputError(f"sample sheet {path}: sample id(s) {duplicated} occur more than once")
    for source in ("path", "url"):
        if source not in samples:
            continue
        shared = samples[samples[source].notna() & samples[source].duplicated(keep=False)]
        lacking = shared[shared.get("barcode_pattern", pd.Series(index=shared.index)).isna()]
        if not lacking.empty:
            raise UserInputError(
                f"sample sheet {path}: samples {lacking['sample'].tolist()} share the {source} "
                f"{lacking[source].iloc[0]!r}; rows pooling one file need a `barcode_pattern` each"
            )
    for level in levels:
        if level not in set(samples["condition"]):
            raise UserInputError(
                f"sample sheet {path}: no sample has condition {level!r} (config `contrast`); "
                "the comparison needs both groups"
            )


def sample_metadata(row: Mapping[str, Any]) -> dict[str, str]:
    """The metadata columns of one sample-sheet row, missing optional values as "unknown"."""
    out = {}
    for column in METADATA_COLUMNS:
        value = row.get(column)
        out[column] = "unknown" if value is None or pd.isna(value) else str(value)
    return out


def check_replicates(samples: pd.DataFrame, *, replicate_key: str) -> None:
    """Refuse a unit of replication that is not independent: samples of one donor are not.

    With ``comparison.replicate_key: sample`` each sample is a replicate, which holds only when
    every donor has one sample; otherwise its samples would count as independent evidence.
    """
    if replicate_key != "sample":
        return
    table = samples.reset_index() if "sample" not in samples.columns else samples
    per_donor = table.groupby("donor")["sample"].apply(list)
    shared = per_donor[per_donor.map(len) > 1]
    if not shared.empty:
        donor, names = shared.index[0], shared.iloc[0]
        raise UserInputError(
            f"config comparison.replicate_key is 'sample', but donor {donor!r} has samples "
            f"{names}: samples of one donor are not independent replicates. Set "
            "comparison.replicate_key: donor (their counts are then summed per donor)."
        )
