"""Reads the clean samples a suite is built from: .npz, .npy or .csv."""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import numpy as np

_INPUT_KEYS = ("inputs", "x", "X", "data")
_LABEL_KEYS = ("labels", "y", "target")
_LABEL_COLUMNS = ("label", "labels", "target", "y", "class")


class SampleFileError(ValueError):
    """A data file the builder cannot read as samples (and optional labels)."""


def load_samples(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Returns (samples (N, D), labels (N,) or None) from a data file.

    - .npz: samples under one of inputs/x/X/data, labels under labels/y/target (optional);
    - .npy: a 2-D array of samples, no labels;
    - .csv: numeric columns; a header naming a label/target/y/class column marks labels.
    Without labels the suite uses the model's own labels on the clean samples.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                key = next((k for k in _INPUT_KEYS if k in data.files), None)
                if key is None:
                    raise SampleFileError(
                        f"{path}: no samples array; expected one of {list(_INPUT_KEYS)}, "
                        f"found {data.files}"
                    )
                x = data[key]
                label_key = next((k for k in _LABEL_KEYS if k in data.files), None)
                y = None if label_key is None else data[label_key]
        elif suffix == ".npy":
            x, y = np.load(path, allow_pickle=False), None
        elif suffix == ".csv":
            x, y = _load_csv(path)
        else:
            raise SampleFileError(f"{path}: unsupported data file type {suffix!r} (.npz .npy .csv)")
    except (OSError, zipfile.BadZipFile) as exc:
        raise SampleFileError(f"{path}: cannot read samples: {exc}") from exc
    except ValueError as exc:
        if isinstance(exc, SampleFileError):
            raise
        raise SampleFileError(f"{path}: cannot read samples: {exc}") from exc
    x = np.asarray(x)
    if x.ndim < 2 or len(x) == 0:
        raise SampleFileError(f"{path}: samples must be (N, features...) with N > 0, got {x.shape}")
    x = x.reshape(len(x), -1)
    if not np.issubdtype(x.dtype, np.number):
        raise SampleFileError(f"{path}: samples must be numeric, got dtype {x.dtype}")
    if y is not None:
        y = np.asarray(y).reshape(-1)
        if len(y) != len(x):
            raise SampleFileError(f"{path}: {len(y)} labels for {len(x)} samples")
        if not np.issubdtype(y.dtype, np.integer) and not np.all(np.mod(y, 1) == 0):
            raise SampleFileError(f"{path}: labels must be class indices (integers)")
        y = y.astype(np.int64)
    return x, y


def _load_csv(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    with path.open(newline="") as handle:
        rows = [row for row in csv.reader(handle) if row]
    if not rows:
        raise SampleFileError(f"{path}: empty CSV")
    header: list[str] | None = None
    try:
        [float(v) for v in rows[0]]
    except ValueError:
        header, rows = [h.strip() for h in rows[0]], rows[1:]
    table = np.array(rows, dtype=np.float64)
    if header is None:
        return table, None
    label_col = next((i for i, h in enumerate(header) if h.lower() in _LABEL_COLUMNS), None)
    if label_col is None:
        return table, None
    return np.delete(table, label_col, axis=1), table[:, label_col]
