"""Validate the workflow config and sample sheet against their JSON schemas, with precise errors."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import pandas as pd
import yaml

from cordatlas.errors import UserInputError
from cordatlas.io.download import check_shared_downloads

#: Sample-sheet columns holding numbers (fixed QC thresholds); every other column is text.
NUMERIC_SAMPLE_COLUMNS = ("min_counts", "max_counts", "min_genes", "max_genes", "max_pct_counts_mt")

#: Sample-sheet columns holding a donor-level number that config comparison.covariates may
#: adjust for as ``{name: ..., type: numeric}`` (one centred column in every model).
NUMERIC_COVARIATE_COLUMNS = ("age_years", "gestational_age_weeks", "hours_to_processing")

#: Sample metadata carried into every cell's obs (missing optional values become "unknown").
METADATA_COLUMNS = (
    "donor",
    "condition",
    "tissue",
    "study",
    "technology",
    "sex",
    "sorted_fraction",
    *NUMERIC_COVARIATE_COLUMNS,
)


def read_schema(path: str | Path) -> dict[str, Any]:
    """Read a YAML JSON-schema file."""
    with open(path) as handle:
        return yaml.safe_load(handle)


class _DuplicateKeyError(Exception):
    def __init__(self, key: object, first: yaml.Mark, again: yaml.Mark) -> None:
        super().__init__(key)
        self.key, self.first, self.again = key, first, again


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (it keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # keys merged in with `<<: *anchor` may be overridden
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.setdefault(key, key_node.start_mark)
            except TypeError:  # an unhashable key: PyYAML's own constructor names it
                continue
            if first is not key_node.start_mark:
                raise _DuplicateKeyError(key, first, key_node.start_mark)
        return super().construct_mapping(node, deep)


#: Where a YAML error started (PyYAML's context), and what closes it.
_YAML_OPENERS = {
    "quoted scalar": "close the quote opened",
    "flow sequence": "close the [ opened",
    "flow mapping": "close the { opened",
}


def _yaml_problem(err: yaml.MarkedYAMLError) -> str:
    """What is wrong at a YAML error's mark and how to fix it, in words."""
    problem = err.problem or "not valid YAML"
    if "'\\t'" in problem:
        return "a tab character; YAML indents with spaces only, replace the tab with spaces"
    context, start = err.context or "", err.context_mark
    opener = next((fix for name, fix in _YAML_OPENERS.items() if name in context), None)
    if opener and start is not None:
        return f"{problem} {context}; {opener} at line {start.line + 1}, column {start.column + 1}"
    if "block" in context or "mapping values" in problem:
        return (
            f"{problem}; check the indentation (each key of one section indented by the same "
            "number of spaces) and put a space after every ':'"
        )
    return f"{problem}; fix the YAML syntax there"


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Parse a config YAML the way Snakemake will, with an error naming the line and column.

    Snakemake's own loader says only "Config file is not valid JSON or YAML"; this one is run on
    the same file first. It also refuses what Snakemake would take silently or crash on: a key
    given twice in one section (YAML keeps the last), a file that is not UTF-8, an empty file,
    and a top level that is not a mapping of keys.

    Raises
    ------
    UserInputError
        ``"<path> line N, column M: <what is wrong>; <what to do>"``.
    """
    data = Path(path).read_bytes()
    text = _utf8(
        data, "utf-8", where=f"{path}", what="is not UTF-8 text (the file", fix="save it as UTF-8"
    )
    try:
        config = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader
    except _DuplicateKeyError as dup:
        raise UserInputError(
            f"{path} line {dup.again.line + 1}, column {dup.again.column + 1}: key {dup.key!r} "
            f"is given twice in one section (first at line {dup.first.line + 1}); YAML would keep "
            "only the last, so delete or merge one of them"
        ) from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{path} line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
        raise UserInputError(f"{where}: {_yaml_problem(err)}") from None
    if config is None:
        raise UserInputError(
            f"{path} is empty; it must hold the workflow's config keys (start from the shipped "
            "config/config.yaml)"
        )
    if not isinstance(config, dict):
        raise UserInputError(
            f"{path} holds a {type(config).__name__} at its top level, not keys with values "
            "(`samples: ...`, `qc: ...`); write it as `key: value` lines"
        )
    return config


def _utf8(data: bytes, encoding: str, *, where: str, what: str, fix: str) -> str:
    """`data` decoded, or one message naming the line, column and byte that are not UTF-8."""
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as err:
        line, column = _byte_position(data, err.start)
        raise UserInputError(
            f"{where} line {line}, column {column}: byte 0x{data[err.start]:02x} {what} looks "
            f"saved as Latin-1 or Windows-1252); {fix}"
        ) from None


def _byte_position(data: bytes, offset: int) -> tuple[int, int]:
    """1-based (line, column) of a byte offset."""
    line = data.count(b"\n", 0, offset) + 1
    return line, offset - (data.rfind(b"\n", 0, offset) + 1) + 1


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
        'holds a character this workflow refuses in paths and prefixes (< > " ` backslash or a '
        "control character: they would be markup in the HTML reports); rename the file or folder"
    ),
    r'^[^<>"`\x00-\x1f]*$': (
        'holds a character this workflow refuses in patterns (< > " ` or a control character: '
        "they would be markup in the HTML reports)"
    ),
    r'^[^<>"`\\\x00-\x1f]*\.(ya?ml|gmt)$': (
        'must be a .yaml, .yml or .gmt file whose path holds none of < > " ` backslash or '
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
    for line, row in table.iterrows():  # indexed by the line number in the file
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
    """The sheet as text cells indexed by line number, refused when it does not parse."""
    if not path.is_file():
        raise UserInputError(
            f"sample sheet {path} not found; set config key `samples` to an existing TSV "
            "(see config/README.md)"
        )
    header, rows = _parse_sheet(path, _sheet_text(path))
    allowed = set(schema["properties"])
    unknown = [c for c in header if c not in allowed]
    if unknown and len(unknown) == len(header):
        raise UserInputError(
            f"sample sheet {path} line 1: none of {unknown[:4]} is a column name; line 1 must "
            f"be the header naming the columns ({', '.join(schema['required'])}, ...)"
        )
    if unknown:
        raise UserInputError(
            f"sample sheet {path}: unknown column(s) {unknown}; allowed columns are {sorted(allowed)}"
        )
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise UserInputError(
            f"sample sheet {path} line 1: column(s) {repeated} occur more than once in the "
            "header; keep one of each"
        )
    if not rows:
        raise UserInputError(f"sample sheet {path} has no rows; add one row per sample")
    return pd.DataFrame.from_dict(rows, orient="index", columns=header, dtype=object)


#: What a sheet that is not text is, from its first bytes, and how to make it text.
_NOT_TEXT_SIGNATURES = {
    b"PK\x03\x04": "is a zip archive (an Excel .xlsx workbook is one), not tab-separated text",
    b"\xd0\xcf\x11\xe0": "is an Excel .xls workbook, not tab-separated text",
    b"\x1f\x8b": "is gzip-compressed; decompress it",
    b"\xff\xfe": "is UTF-16 text (a spreadsheet's 'Unicode text'), not UTF-8",
    b"\xfe\xff": "is UTF-16 text (a spreadsheet's 'Unicode text'), not UTF-8",
}
_SAVE_AS_TSV = "save the sheet as tab-separated text (.tsv), UTF-8 encoded"


def _sheet_text(path: Path) -> str:
    """The sheet's text, refused when empty, binary or not UTF-8 (a UTF-8 BOM is dropped)."""
    data = path.read_bytes()
    if not data.strip():
        size = "0 bytes" if not data else "only blank lines"
        raise UserInputError(
            f"sample sheet {path} is empty ({size}); it needs a header line and one row per sample"
        )
    for signature, what in _NOT_TEXT_SIGNATURES.items():
        if data.startswith(signature):
            raise UserInputError(f"sample sheet {path} {what}; {_SAVE_AS_TSV}")
    text = _utf8(data, "utf-8-sig", where=f"sample sheet {path}", what="is not UTF-8 (the sheet",
                 fix=_SAVE_AS_TSV)  # fmt: skip
    if "\x00" in text:
        line, column = _byte_position(data, data.index(b"\x00"))
        raise UserInputError(
            f"sample sheet {path} line {line}, column {column}: a NUL byte; the file is not "
            f"text, {_SAVE_AS_TSV}"
        )
    return text


def _parse_sheet(path: Path, text: str) -> tuple[list[str], dict[int, list[str]]]:
    """Header and rows (by 1-based line number) of tab-separated text; blank lines skipped.

    Short rows are padded with empty cells and empty cells past the header's last column
    dropped (spreadsheets write both); a field wrapped in double quotes is unquoted.
    """
    lines = text.replace("\r\n", "\n").split("\n")
    header = _sheet_fields(path, 1, lines[0])
    while header and header[-1] == "":
        header.pop()
    _check_header(path, header)
    rows = {}
    for number, line in enumerate(lines[1:], start=2):
        if line.strip():
            rows[number] = _sheet_row(path, number, _sheet_fields(path, number, line), header)
    return header, rows


def _sheet_fields(path: Path, number: int, line: str) -> list[str]:
    fields = [f.strip() for f in line.split("\t")]
    for position, field in enumerate(fields, start=1):
        if not field.startswith('"'):
            continue
        if len(field) < 2 or not field.endswith('"'):
            raise UserInputError(
                f"sample sheet {path} line {number}, field {position}: {field[:40]!r} opens a "
                'double quote that does not close in the same field; delete the " (values need '
                "no quotes) or close it"
            )
        fields[position - 1] = field[1:-1].replace('""', '"')
    return fields


def _check_header(path: Path, header: list[str]) -> None:
    if len(header) == 1:
        looks = next((name for sep, name in _OTHER_SEPARATORS.items() if sep in header[0]), "")
        raise UserInputError(
            f"sample sheet {path} line 1 has no tab{looks}; columns must be separated by tabs "
            "(an editor may have turned them into spaces)"
        )
    for position, name in enumerate(header, start=1):
        if not name:
            raise UserInputError(
                f"sample sheet {path} line 1: header field {position} is empty; name the "
                "column or delete it"
            )


_OTHER_SEPARATORS = {
    ",": " (the sheet looks comma-separated)",
    ";": " (the sheet looks semicolon-separated)",
    " ": " (the columns look separated by spaces)",
}


def _sheet_row(path: Path, number: int, fields: list[str], header: list[str]) -> list[str]:
    """One row fitted to the header: padded, or refused when it holds more values."""
    extra = fields[len(header) :]
    if any(extra):
        sample = fields[header.index("sample")] if "sample" in header else "?"
        raise UserInputError(
            f"sample sheet {path} line {number} (sample {sample!r}) has {len(fields)} fields "
            f"but the header names {len(header)} columns (extra value {next(filter(None, extra))!r}); "
            "a value holds a tab or the row has a stray field: remove it"
        )
    if len(fields) == 1 and len(header) > 1:
        raise UserInputError(
            f"sample sheet {path} line {number} has no tab; columns must be separated by tabs"
        )
    return fields[: len(header)] + [""] * (len(header) - len(fields))


def _check_record(
    record: dict[str, Any],
    label: str,
    validator: jsonschema.Draft202012Validator,
    schema: Mapping[str, Any],
    levels: tuple[str, str],
) -> dict[str, Any]:
    """One row's values, numbers parsed, checked against the schema and the contrast."""
    for column in (*NUMERIC_SAMPLE_COLUMNS, *NUMERIC_COVARIATE_COLUMNS):
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
    if "url" in samples:
        check_shared_downloads(samples.to_dict("records"), sheet=path)


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


def check_covariates(
    samples: pd.DataFrame, covariates: Sequence[Any], *, replicate_key: str = "donor"
) -> None:
    """Refuse covariates the sheet cannot feed: a numeric one needs a number for every sample.

    `covariates` is config ``comparison.covariates`` (names, or ``{name, type}`` mappings).
    A numeric covariate must be one of :data:`NUMERIC_COVARIATE_COLUMNS`, hold a number in
    every row (an empty cell would drop the donor from every model) and be one value per
    `replicate_key`; a numeric column declared categorical is refused (one dummy per distinct
    value leaves no residual degrees of freedom: the bug this declaration exists to avoid).
    """
    table = samples.reset_index(drop=True) if "sample" in samples.columns else samples.reset_index()
    seen: set[str] = set()
    for item in covariates:
        is_mapping = isinstance(item, Mapping)
        name = str(item["name"]) if is_mapping else str(item)
        kind = str(item.get("type", "categorical")) if is_mapping else "categorical"
        if name in seen:
            raise UserInputError(
                f"config comparison.covariates names {name!r} twice; keep one entry"
            )
        seen.add(name)
        if kind != "numeric":
            if name in NUMERIC_COVARIATE_COLUMNS:
                raise UserInputError(
                    f"config comparison.covariates: {name!r} holds numbers; declare it "
                    f"{{name: {name}, type: numeric}} (as a category each distinct value would "
                    "cost a degree of freedom)"
                )
            continue
        if name not in NUMERIC_COVARIATE_COLUMNS:
            raise UserInputError(
                f"config comparison.covariates: {name!r} is declared numeric but the sample "
                f"sheet's numeric covariate columns are {list(NUMERIC_COVARIATE_COLUMNS)}; "
                f"use one of them or declare {name!r} categorical"
            )
        values = table[name] if name in table.columns else pd.Series(pd.NA, index=table.index)
        parsed = pd.to_numeric(values, errors="coerce").astype(float)
        bad = ~parsed.between(-float("inf"), float("inf"), inclusive="neither")
        if bad.any():
            first = table.index[bad.to_numpy()][0]
            value = values.loc[first]
            shown = "empty" if value is None or pd.isna(value) else repr(str(value))
            raise UserInputError(
                f"sample sheet: sample {str(table.at[first, 'sample'])!r}, column {name!r}: "
                f"value {shown} is not a finite number, and config comparison.covariates "
                f"adjusts for {name!r} as numeric; fill in a number for every sample "
                f"({int(bad.sum())} lack one) or remove it from comparison.covariates"
            )
        if replicate_key in table.columns:
            spread = parsed.groupby(table[replicate_key].astype(str)).nunique()
            if (spread > 1).any():
                replicate = spread.index[spread > 1][0]
                found = sorted(parsed[table[replicate_key].astype(str) == replicate].unique())
                raise UserInputError(
                    f"sample sheet: {replicate_key} {replicate!r} has several values of {name!r} "
                    f"({[float(v) for v in found]}); a {replicate_key} is one biological "
                    f"replicate, so {name!r} must be the same in all its samples"
                )


def main(argv: list[str] | None = None) -> int:
    """``python -m cordatlas.config FILE...``: check config files, one line per problem.

    For files given to Snakemake with ``--configfile``: its command line reads them before the
    workflow runs, so a YAML error in one gets only Snakemake's generic message.
    """
    import sys

    problems = 0
    for path in sys.argv[1:] if argv is None else argv:
        try:
            read_config_file(path)
        except (UserInputError, OSError) as err:
            print(err, file=sys.stderr)
            problems += 1
        else:
            print(f"{path}: valid YAML (its keys are checked when the workflow runs)")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
