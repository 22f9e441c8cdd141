"""`outrider reference check`: runs the reference checks on a stored reference or a file.

What is checked, in order of precedence:

- `PATH`: a reference written by `outrider reference build` or a live capture (.npz with
  `data` and `meta`), or a file of vectors (.npy, .npz, .csv; rows on the first axis);
- `--config FILE --signal MODEL/SIGNAL`: that signal's stored reference; with `--from RAW`
  instead, the raw rows of RAW through the signal's transform (and embedder), as
  `reference build` would build them, without storing anything.

With `--config`/`--signal`, `--probe-suite` and `--training-set` files hold raw model
inputs (a suite from `outrider probes build` gives its `inputs`) and go through the same
transform, so they are compared in the signal's space; without, they must already be
vectors like the reference's. Exit status: 0 nothing above the warn thresholds, 1 some
check flagged the reference, 2 bad usage or an unreadable input.
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from detectors.reference_checks import CheckSettings, run_reference_checks
from service.monitor.embedder import EmbedderError, OnnxEmbedder
from service.monitor.reference import (
    Reference,
    ReferenceError,
    ReferenceStore,
    find_signal,
    read_reference,
)
from service.monitor.reference_check_report import format_json, format_table, render_plot
from service.monitor.reference_sources import SourceError, open_source
from service.monitor.signals import SignalError, SignalExtractor

ConfigLoader = Callable[[Path], Any]


class CheckInputError(ValueError):
    """An input of `reference check` that cannot be read or does not fit the reference."""


def add_reference_check_subcommand(
    reference_commands: argparse._SubParsersAction[argparse.ArgumentParser],
    load_config: ConfigLoader,
) -> argparse.ArgumentParser:
    """Adds `check` beside `reference build` (`add_reference_subcommands` returns the set)."""
    check = reference_commands.add_parser(
        "check",
        help="check a reference for duplicates, outliers, poisoning, label errors and leakage",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    check.add_argument(
        "path",
        nargs="?",
        type=Path,
        default=None,
        help="reference .npz, or vectors (.npy, .npz, .csv)",
    )
    check.add_argument("--config", type=Path, default=None, help="outrider config file")
    check.add_argument("--signal", default=None, help="MODEL/SIGNAL as named in the config")
    check.add_argument(
        "--from",
        dest="source",
        type=Path,
        default=None,
        help="raw rows to transform as the signal does (with --config/--signal)",
    )
    check.add_argument(
        "--column",
        dest="columns",
        action="append",
        default=[],
        metavar="NAME",
        help="with --config/--signal: the CSV column, NDJSON field or .npz array of the raw "
        "files (--from, --probe-suite, --training-set), as for `reference build`",
    )
    check.add_argument("--labels", type=Path, default=None, help="true class per row")
    check.add_argument(
        "--probabilities",
        type=Path,
        default=None,
        help="(rows, classes) model probabilities per row",
    )
    check.add_argument(
        "--seed-reference",
        type=Path,
        default=None,
        help="trusted rows (reference .npz or vectors): OOD against them",
    )
    check.add_argument(
        "--probe-suite",
        type=Path,
        action="append",
        default=[],
        help="probe suite .npz (or rows); repeat for several",
    )
    check.add_argument("--training-set", type=Path, default=None, help="the model's training rows")
    check.add_argument(
        "--priors", default=None, help="expected class shares: 'p0,p1,...' or a .npy/.csv file"
    )
    check.add_argument(
        "--time-budget",
        type=float,
        default=CheckSettings().time_budget_s,
        help="seconds; checks not started by then are skipped (default 30)",
    )
    check.add_argument("--json", action="store_true", help="JSON (schema in the docs) on stdout")
    check.add_argument("--plot", type=Path, default=None, help="write a PNG of the findings")
    check.set_defaults(func=lambda args: run_reference_check(args, load_config))
    return check


def run_reference_check(args: argparse.Namespace, load_config: ConfigLoader) -> int:
    """Runs `reference check`; prints the table or JSON. Exit status (see the module doc)."""
    try:
        inputs = _load_inputs(args, load_config)
        settings = CheckSettings(time_budget_s=args.time_budget)
        report = run_reference_checks(
            inputs.vectors,
            probabilities=inputs.probabilities,
            labels=inputs.labels,
            seed_reference=inputs.seed_reference,
            probe_suites=inputs.probe_suites or None,
            training_set=inputs.training_set,
            priors=inputs.priors,
            settings=settings,
        )
    except (CheckInputError, ReferenceError, SourceError, EmbedderError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        sys.stdout.write(format_json(report, inputs.source))
    else:
        sys.stdout.write(format_table(report, inputs.source))
    if args.plot is not None:
        written = render_plot(args.plot, report, inputs.vectors)
        if not args.json:
            print(f"plot written to {written}")
    return 1 if report.flagged else 0


class _Inputs:
    def __init__(self) -> None:
        self.vectors = np.empty((0, 0))
        self.source: dict[str, object] = {}
        self.probabilities: np.ndarray | None = None
        self.labels: np.ndarray | None = None
        self.seed_reference: np.ndarray | None = None
        self.probe_suites: dict[str, np.ndarray] = {}
        self.training_set: np.ndarray | None = None
        self.priors: np.ndarray | None = None


def _load_inputs(args: argparse.Namespace, load_config: ConfigLoader) -> _Inputs:
    if (args.config is None) != (args.signal is None):
        raise CheckInputError("--config and --signal go together")
    if args.path is not None and args.config is not None:
        raise CheckInputError("give a reference PATH or --config/--signal, not both")
    if args.path is None and args.config is None:
        raise CheckInputError("give a reference PATH, or --config and --signal")
    if args.source is not None and args.config is None:
        raise CheckInputError("--from needs --config and --signal (the transform to apply)")
    out = _Inputs()
    to_rows: Callable[[Path], np.ndarray]
    if args.path is not None:
        out.vectors, out.source = _vectors_file(args.path)
        to_rows = _vectors_only
    else:
        config = load_config(args.config)
        model, settings = find_signal(config, args.signal)
        extractor = SignalExtractor(
            model,
            settings,
            embedder=OnnxEmbedder(settings.source.embedder) if settings.source.embedder else None,
        )

        embedder_settings = settings.source.embedder
        text = embedder_settings is not None and embedder_settings.tokenizer is not None

        def to_rows(path: Path) -> np.ndarray:
            return _through_signal(
                extractor, path, text=text, columns=args.columns, tensor=settings.source.tensor
            )

        if args.source is not None:
            out.vectors = to_rows(args.source)
            out.source = {
                "path": str(args.source),
                "model": model,
                "signal": settings.name,
                "version": None,
                "created": None,
                "source_sha256": None,
            }
        else:
            stored = ReferenceStore(Path(config.state_dir)).load(
                model, settings.name, settings.reference.path
            )
            if stored is None:
                raise CheckInputError(
                    f"signal {model}/{settings.name} has no stored reference yet; build one "
                    "with `outrider reference build` or pass --from RAW"
                )
            out.vectors, out.source = stored.data, _describe(stored, None)
    n, d = out.vectors.shape
    if args.labels is not None:
        out.labels = _integers(args.labels, n)
    if args.probabilities is not None:
        out.probabilities = _matrix(args.probabilities, "probabilities", rows=n)
    if args.seed_reference is not None:
        out.seed_reference = _vectors_file(args.seed_reference)[0]
    for path in args.probe_suite:
        name = path.stem
        if name in out.probe_suites:
            name = str(path)
        out.probe_suites[name] = to_rows(path)
    if args.training_set is not None:
        out.training_set = to_rows(args.training_set)
    if args.priors is not None:
        out.priors = _priors(args.priors)
    for what, rows in (
        ("seed reference", out.seed_reference),
        ("training set", out.training_set),
        *((f"probe suite {k!r}", v) for k, v in out.probe_suites.items()),
    ):
        if rows is not None and rows.shape[1] != d:
            raise CheckInputError(f"{what} rows have {rows.shape[1]} columns, the reference {d}")
    return out


def _vectors_file(path: Path) -> tuple[np.ndarray, dict[str, object]]:
    """Rows of a reference .npz (with its metadata) or of a plain vectors file."""
    if _is_reference_file(path):
        stored = read_reference(path)
        return stored.data, _describe(stored, path)
    return _vectors_only(path), {
        "path": str(path),
        "model": None,
        "signal": None,
        "version": None,
        "created": None,
        "source_sha256": None,
    }


def _is_reference_file(path: Path) -> bool:
    if path.suffix.lower() != ".npz" or not path.is_file() or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
    return {"data.npy", "meta.npy"} <= names


def _vectors_only(path: Path) -> np.ndarray:
    """A vectors file as (n, d) float64: rows on the first axis, the rest flattened.

    Read like `reference build` reads raw rows (`reference_sources`); a probe suite's
    `inputs` array, or an .npz's `data` or only array.
    """
    source = open_source(path, text=False, tensor="inputs")
    parts = [np.asarray(chunk) for chunk in source.chunks]
    if not parts or source.total == 0:
        raise CheckInputError(f"{path}: no rows")
    array = np.concatenate(parts, axis=0)
    if array.dtype.kind not in "biuf":
        raise CheckInputError(f"{path}: numeric rows expected, got dtype {array.dtype}")
    return np.asarray(array.reshape(array.shape[0], -1), dtype=np.float64)


def _through_signal(
    extractor: SignalExtractor,
    path: Path,
    *,
    text: bool,
    columns: list[str],
    tensor: str,
) -> np.ndarray:
    """Raw rows of a file (a probe suite's `inputs`, else as `reference build` reads them)
    through the signal's transform and embedder."""
    if _is_probe_suite(path):
        columns = ["inputs"]
    source = open_source(path, text=text, columns=columns, tensor=tensor)
    parts = []
    first = 0
    for chunk in source.chunks:
        try:
            parts.append(extractor.rows_from_tensor(chunk))
        except SignalError as exc:
            raise CheckInputError(
                f"{path}: rows {first}..{first + len(chunk) - 1}: {exc} ({exc.reason})"
            ) from None
        first += len(chunk)
    if not parts:
        raise CheckInputError(f"{path}: no rows")
    return np.concatenate(parts, axis=0)


def _is_probe_suite(path: Path) -> bool:
    if path.suffix.lower() != ".npz" or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
    return {"inputs.npy", "metadata.npy"} <= names


def _matrix(path: Path, what: str, rows: int) -> np.ndarray:
    array = _vectors_only(path)
    if array.shape[0] != rows:
        raise CheckInputError(f"{path}: {what} have {array.shape[0]} rows, the reference {rows}")
    return array


def _integers(path: Path, rows: int) -> np.ndarray:
    values = _vectors_only(path)
    if values.shape != (rows, 1):
        raise CheckInputError(
            f"{path}: labels must be one class per reference row ({rows}), got shape "
            f"{list(values.shape)}"
        )
    flat = values[:, 0]
    if not np.all(np.isfinite(flat)) or not np.all(flat == np.round(flat)) or flat.min() < 0:
        raise CheckInputError(f"{path}: labels must be non-negative integer classes")
    return flat.astype(np.int64)


def _priors(text: str) -> np.ndarray:
    path = Path(text)
    if path.suffix.lower() in (".npy", ".npz", ".csv") and path.exists():
        values = _vectors_only(path).ravel()
    else:
        try:
            values = np.array([float(v) for v in text.split(",")], dtype=np.float64)
        except ValueError:
            raise CheckInputError(
                f"--priors must be comma-separated shares or a .npy/.csv file, got {text!r}"
            ) from None
    total = float(values.sum())
    if np.any(values < 0) or total <= 0:
        raise CheckInputError(f"--priors must be non-negative with a positive sum, got {text!r}")
    return np.asarray(values / total)


def _describe(stored: Reference, path: Path | None) -> dict[str, object]:
    return {
        "path": None if path is None else str(path),
        "model": stored.model,
        "signal": stored.signal,
        "version": stored.version,
        "created": stored.created,
        "source_sha256": stored.source_sha256,
    }
