"""`outrider reference build`: builds a signal's reference from a file, with a progress bar."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from service.monitor.embedder import EmbedderError
from service.monitor.reference import ReferenceError, build_reference
from service.monitor.settings import ModelSettings, MonitorSettings


class ReferenceConfig(Protocol):
    """What the reference command reads from the root settings."""

    @property
    def models(self) -> Any: ...

    @property
    def monitor(self) -> MonitorSettings: ...

    @property
    def state_dir(self) -> Any: ...


ConfigLoader = Callable[[Path], ReferenceConfig]

BUILD_DESCRIPTION = """\
Builds the reference sample of one signal from a file of the inputs the signal reads
(the raw request or response tensor, or the texts an embedder signal embeds), and stores
it where the signal loads it from. The file is read and embedded in chunks, with a
progress bar on the terminal.

What each file type must hold:
  .csv            a header row, then one record per row. A text signal (an embedder with a
                  tokenizer) reads one column: --column NAME, or the file's only column.
                  A numeric signal reads the --column NAME columns (repeatable, in order)
                  or every column, each cell a number; without --column the header is
                  optional.
  .ndjson .jsonl  one JSON value per line. An object gives its --column field: a string
                  for a text signal, a number or a list of numbers for a numeric one
                  (several --column fields are joined into one row). A line that is a bare
                  string (text) or a list of numbers (numeric) needs no --column.
  .npy            an array with rows on the first axis (strings for a text signal).
  .npz            the array named by --column, else the one named like the signal's
                  tensor, else `data`, else the only array.

The reference is compared with the traffic of every version of the model; --version
only records which version the rows came from.
"""


def add_reference_subcommands(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], load_config: ConfigLoader
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """Adds `reference build` to the CLI and returns the `reference` subcommands' set.

    `load_config(path)` returns the root settings.
    """
    reference = subparsers.add_parser("reference", help="build and inspect reference samples")
    sub = reference.add_subparsers(dest="reference_command", required=True)
    build = sub.add_parser(
        "build",
        help="build a signal's reference from a file of raw inputs: text or numbers in "
        ".csv, .ndjson/.jsonl, .npy or .npz",
        description=BUILD_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    build.add_argument("--config", type=Path, required=True, help="outrider config file")
    build.add_argument("--signal", required=True, help="MODEL/SIGNAL as named in the config")
    build.add_argument(
        "--from",
        dest="source",
        type=Path,
        required=True,
        metavar="FILE",
        help="raw rows: .csv, .ndjson, .jsonl, .npy or .npz (see above)",
    )
    build.add_argument(
        "--column",
        dest="columns",
        action="append",
        default=[],
        metavar="NAME",
        help="CSV column or NDJSON field to read (numeric signals: repeat for several, in "
        "order); for .npz, the array",
    )
    build.add_argument(
        "--version",
        default="",
        help="model version the rows came from (recorded in the reference; the reference "
        "applies to every version of the model)",
    )
    build.add_argument("--no-progress", action="store_true", help="no progress bar")
    build.set_defaults(func=lambda args: run_reference_build(args, load_config))
    return sub


def run_reference_build(args: argparse.Namespace, load_config: ConfigLoader) -> int:
    """Runs `reference build`; prints where the reference went, or the error. Exit code."""
    config = load_config(args.config)
    models: dict[str, ModelSettings] = dict(config.models)
    try:
        reference, path = build_reference(
            _View(models, config.monitor),
            args.signal,
            args.source,
            state_dir=Path(config.state_dir),
            version=args.version,
            columns=tuple(args.columns),
            progress=not args.no_progress,
        )
    except (ReferenceError, EmbedderError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"reference {reference.model}/{reference.signal}: {reference.count} rows x "
        f"{reference.dims} dims -> {path} (source sha256 {reference.source_sha256[:12]})"
    )
    return 0


class _View:
    def __init__(self, models: dict[str, ModelSettings], monitor: MonitorSettings) -> None:
        self.models = models
        self.monitor = monitor
