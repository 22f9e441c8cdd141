"""Raw reference rows read from a file in chunks: CSV, NDJSON, .npy and .npz.

What each file type gives (this is what `outrider reference build --help` promises):

- `.csv`: a header row, then one record per row. A text signal reads one column, named
  by `--column` (or the only column the file has). A numeric signal reads the columns
  named by `--column` (repeatable, in that order) or every column; each cell a number.
  Without `--column`, a numeric CSV may have no header.
- `.ndjson` / `.jsonl`: one JSON value per line (blank lines skipped). A JSON object
  gives the field named by `--column`: a string for a text signal; a number or a list of
  numbers for a numeric one (several `--column` fields are joined into one row). A bare
  JSON string (text) or list of numbers (numeric) needs no `--column`.
- `.npy`: an array with rows on its first axis (memory-mapped, so read in chunks); a
  text signal needs a string array. `--column` does not apply.
- `.npz`: the array named by `--column`, else the one named like the signal's tensor,
  else `data`, else the only array. Loaded whole.

Every error names the file and, for text formats, the line. CSV and NDJSON files are read
twice: once to count rows (for the progress bar and to size the result once), once to
read them; memory holds one chunk of raw rows at a time.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SUFFIXES = (".csv", ".ndjson", ".jsonl", ".npy", ".npz")
CHUNK_ROWS = 1024


class SourceError(ValueError):
    """A source file that cannot give the rows asked for; the message names file and line."""


@dataclass(frozen=True)
class SourceRows:
    """How many rows a source holds, and the rows in chunks (text: object arrays of bytes)."""

    total: int
    chunks: Iterator[np.ndarray]


def open_source(
    path: Path,
    *,
    text: bool,
    columns: Sequence[str] = (),
    tensor: str | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> SourceRows:
    """The rows of `path` for a text or numeric signal; raises `SourceError`."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise SourceError(
            f"{path}: unsupported file type {suffix!r}; use {', '.join(SUFFIXES)}"
        )
    if text and len(columns) > 1:
        raise SourceError(f"{path}: a text signal reads one column, got {', '.join(columns)}")
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    if suffix == ".csv":
        picks, header = _csv_plan(path, text, columns)
        total = _count_csv(path, header=header)
        return SourceRows(total, _csv_chunks(path, text, picks, header, chunk_rows))
    if suffix in (".ndjson", ".jsonl"):
        total = _count_lines(path)
        return SourceRows(total, _ndjson_chunks(path, text, columns, chunk_rows))
    array = _npz_array(path, columns, tensor) if suffix == ".npz" else _npy_array(path, columns)
    if array.ndim == 0:
        raise SourceError(f"{path}: a scalar array has no rows")
    if text and array.dtype.kind not in "SUO":
        raise SourceError(f"{path}: a text signal needs an array of strings, got {array.dtype}")
    return SourceRows(int(array.shape[0]), _array_chunks(array, text, chunk_rows))


def _error_name(exc: BaseException) -> str:
    kind = type(exc)
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


def _open_text(path: Path) -> Any:
    return path.open(newline="", encoding="utf-8", errors="strict")


def _count_csv(path: Path, *, header: bool) -> int:
    try:
        with _open_text(path) as fh:
            count = sum(1 for record in csv.reader(fh) if record)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise SourceError(f"{path}: unreadable CSV ({_error_name(exc)}: {exc})") from None
    return max(0, count - 1) if header else count


def _count_lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(1 for line in fh if line.strip())


def _csv_plan(path: Path, text: bool, columns: Sequence[str]) -> tuple[list[int] | None, bool]:
    """Column indices to read (None: all) and whether the first record is a header."""
    try:
        with _open_text(path) as fh:
            header = next((r for r in csv.reader(fh) if r), None)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise SourceError(f"{path}: unreadable CSV ({_error_name(exc)}: {exc})") from None
    if header is None:
        return None, False
    names = [h.strip() for h in header]
    if columns:
        missing = [c for c in columns if c not in names]
        if missing:
            raise SourceError(
                f"{path}: no column {', '.join(repr(m) for m in missing)} in the header "
                f"(columns: {', '.join(names)})"
            )
        return [names.index(c) for c in columns], True
    if text:
        if len(names) != 1:
            raise SourceError(
                f"{path}: {len(names)} columns ({', '.join(names)}); name the text column "
                "with --column"
            )
        return [0], True
    try:  # a numeric CSV without --column may or may not start with a header
        [float(x) for x in header]
    except ValueError:
        return None, True
    return None, False


def _csv_chunks(
    path: Path, text: bool, picks: list[int] | None, header: bool, chunk_rows: int
) -> Iterator[np.ndarray]:
    with _open_text(path) as fh:
        reader = csv.reader(fh)
        try:
            batch: list[Any] = []
            skip = header
            for record in reader:
                if not record:
                    continue
                if skip:
                    skip = False
                    continue
                batch.append(_csv_row(path, reader.line_num, record, picks, text))
                if len(batch) == chunk_rows:
                    yield _as_rows(path, batch, text)
                    batch = []
            if batch:
                yield _as_rows(path, batch, text)
        except (UnicodeDecodeError, csv.Error) as exc:
            raise SourceError(
                f"{path}: line {reader.line_num}: unreadable CSV ({_error_name(exc)}: {exc})"
            ) from None


def _csv_row(
    path: Path, line: int, record: list[str], picks: list[int] | None, text: bool
) -> Any:
    try:
        cells = record if picks is None else [record[i] for i in picks]
    except IndexError:
        raise SourceError(
            f"{path}: line {line}: {len(record)} fields, the header has more"
        ) from None
    if text:
        return cells[0].encode("utf-8")
    try:
        return [float(x) for x in cells]
    except ValueError as exc:
        raise SourceError(f"{path}: line {line}: not a number ({exc})") from None


def _ndjson_chunks(
    path: Path, text: bool, columns: Sequence[str], chunk_rows: int
) -> Iterator[np.ndarray]:
    batch: list[Any] = []
    with path.open("rb") as fh:
        for line_number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise SourceError(f"{path}: line {line_number}: not JSON ({exc})") from None
            batch.append(_json_row(path, line_number, value, text, columns))
            if len(batch) == chunk_rows:
                yield _as_rows(path, batch, text)
                batch = []
    if batch:
        yield _as_rows(path, batch, text)


def _json_row(path: Path, line: int, value: Any, text: bool, columns: Sequence[str]) -> Any:
    where = f"{path}: line {line}"
    if isinstance(value, dict):
        if not columns:
            raise SourceError(f"{where}: a JSON object; name the field with --column")
        missing = [c for c in columns if c not in value]
        if missing:
            raise SourceError(f"{where}: no field {', '.join(repr(m) for m in missing)}")
        fields = [value[c] for c in columns]
    else:
        fields = [value]
    if text:
        (field,) = fields
        if not isinstance(field, str):
            raise SourceError(f"{where}: a text signal needs a string, got {type(field).__name__}")
        return field.encode("utf-8")
    row: list[float] = []
    for field in fields:
        items = field if isinstance(field, list) else [field]
        for item in items:
            if isinstance(item, bool) or not isinstance(item, int | float):
                raise SourceError(f"{where}: not a number: {item!r}")
            row.append(float(item))
    return row


def _as_rows(path: Path, batch: list[Any], text: bool) -> np.ndarray:
    if text:
        rows = np.empty(len(batch), dtype=object)
        rows[:] = batch
        return rows
    widths = {len(r) for r in batch}
    if len(widths) != 1:
        raise SourceError(
            f"{path}: rows of differing lengths ({', '.join(map(str, sorted(widths)))})"
        )
    return np.asarray(batch, dtype=np.float64)


def _npy_array(path: Path, columns: Sequence[str]) -> np.ndarray:
    if columns:
        raise SourceError(f"{path}: --column applies to .csv, .ndjson, .jsonl and .npz files")
    try:
        return np.asarray(np.load(path, mmap_mode="r", allow_pickle=False))
    except Exception as exc:  # a damaged file fails in many ways: say which file and how
        raise SourceError(f"{path}: unreadable ({_error_name(exc)}: {exc})") from None


def _npz_array(path: Path, columns: Sequence[str], tensor: str | None) -> np.ndarray:
    if len(columns) > 1:
        raise SourceError(f"{path}: name one array with --column, got {', '.join(columns)}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = list(npz.files)
            if columns:
                if columns[0] not in names:
                    raise SourceError(
                        f"{path}: no array {columns[0]!r} (arrays: {', '.join(names)})"
                    )
                return np.asarray(npz[columns[0]])
            for key in (tensor, "data"):
                if key is not None and key in names:
                    return np.asarray(npz[key])
            if len(names) == 1:
                return np.asarray(npz[names[0]])
    except SourceError:
        raise
    except Exception as exc:  # a damaged file fails in many ways: say which file and how
        raise SourceError(f"{path}: unreadable ({_error_name(exc)}: {exc})") from None
    raise SourceError(
        f"{path}: several arrays ({', '.join(names)}); name one with --column, or call it "
        f"`data` or {tensor!r}"
    )


def _array_chunks(array: np.ndarray, text: bool, chunk_rows: int) -> Iterator[np.ndarray]:
    for start in range(0, array.shape[0], chunk_rows):
        chunk = np.asarray(array[start : start + chunk_rows])
        if text and chunk.dtype.kind in "SU":
            flat = chunk.reshape(chunk.shape[0], -1)[:, 0]
            rows = np.empty(flat.shape[0], dtype=object)
            rows[:] = [x.encode("utf-8") if isinstance(x, str) else bytes(x) for x in flat]
            chunk = rows
        yield chunk
