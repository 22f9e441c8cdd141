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


def add_reference_subcommands(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], load_config: ConfigLoader
) -> argparse.ArgumentParser:
    """Adds `reference build` to the CLI; `load_config(path)` returns the root settings."""
    reference = subparsers.add_parser("reference", help="build and inspect reference samples")
    sub = reference.add_subparsers(dest="reference_command", required=True)
    build = sub.add_parser(
        "build",
        help="build a signal's reference from a .npy, .npz or .csv file of raw tensor rows",
    )
    build.add_argument("--config", type=Path, required=True, help="outrider config file")
    build.add_argument("--signal", required=True, help="MODEL/SIGNAL as named in the config")
    build.add_argument(
        "--from", dest="source", type=Path, required=True, help="raw rows (.npy, .npz, .csv)"
    )
    build.add_argument("--version", default="", help="model version the rows came from")
    build.add_argument("--no-progress", action="store_true", help="no progress bar")
    build.set_defaults(func=lambda args: run_reference_build(args, load_config))
    return reference


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
