"""The `outrider` command line: argument parsing and dispatch, nothing more.

Each subcommand converts its arguments, calls a transport-free function elsewhere, and
turns the outcome into an exit status: 0 success, 1 failure, 2 bad usage or config.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.version import __version__

if TYPE_CHECKING:
    from service.config import OutriderSettings


def _cmd_version(args: argparse.Namespace) -> int:
    print(f"outrider {__version__}")
    return 0


def _cmd_config_check(args: argparse.Namespace) -> int:
    from service.config import ConfigError, load_settings, settings_summary

    status = 0
    for path in args.files:
        try:
            settings = load_settings(Path(path))
        except ConfigError as error:
            print(f"{path}: invalid ({len(error.errors)} error(s))", file=sys.stderr)
            for line in error.errors:
                print(f"  {line}", file=sys.stderr)
            status = 2
            continue
        print(f"{path}: valid")
        for note in settings.deprecations:
            print(f"{path}: warning: {note}", file=sys.stderr)
        if not args.quiet:
            print(settings_summary(settings))
    return status


def _cmd_modelserver(args: argparse.Namespace) -> int:
    from service.log_setup import configure_logging
    from service.modelserver.demo_model import build_demo_model
    from service.modelserver.server import serve_until_signalled, start_model_server

    configure_logging(args.log_level)
    if args.model is None:
        model_path = build_demo_model(Path(args.state_dir) / "models", args.demo)
    else:
        model_path = Path(args.model)
        if not model_path.is_file():
            print(f"model file not found: {model_path}", file=sys.stderr)
            return 2

    async def run() -> None:
        server = await start_model_server(
            model_path,
            name=args.name,
            version=args.version,
            host=args.host,
            port=args.port,
            max_message_bytes=args.max_message_bytes,
        )
        print(
            f"serving {args.name} (version {args.version}) on {args.host}:{server.port}", flush=True
        )
        await serve_until_signalled(server)

    try:
        asyncio.run(run())
    except OSError as error:
        print(f"cannot start the model server: {error}", file=sys.stderr)
        return 1
    return 0


def _load_or_exit(path: Path | None) -> OutriderSettings:
    """The settings, or a printout of every error and exit status 2."""
    from service.config import ConfigError, load_settings

    try:
        return load_settings(path)
    except ConfigError as error:
        print(
            f"{error.source}: invalid configuration ({len(error.errors)} error(s))", file=sys.stderr
        )
        for line in error.errors:
            print(f"  {line}", file=sys.stderr)
        raise SystemExit(2) from None


def _cmd_serve(args: argparse.Namespace) -> int:
    from service.app import serve
    from service.dataplane.event_loop import loop_factory
    from service.log_setup import configure_logging

    settings = _load_or_exit(args.config)
    configure_logging(settings.logging.level, settings.logging.format)
    _one_blas_thread()
    try:
        # asyncio by default, uvloop when configured (dataplane.event_loop).
        loop = loop_factory(settings.dataplane.event_loop)()
        try:
            loop.run_until_complete(serve(settings))
        finally:
            loop.close()
    except Exception as error:  # a start-up failure: say what, exit non-zero, no traceback wall
        import structlog

        structlog.get_logger("outrider").error(
            "outrider.failed", error=str(error), error_type=type(error).__name__
        )
        return 1
    return 0


def _one_blas_thread() -> Any:
    """Caps numpy's BLAS (OpenBLAS, MKL) at one thread for the whole sidecar process.

    The detectors' matrix work runs on the monitor's worker thread. With a BLAS thread per
    core, on a node whose cores the model server also uses, BLAS threads spin waiting for
    each other: on the shared 2-core development machine one MMD test the size of
    examples/demo.yaml's took 76 ms of CPU with two OpenBLAS threads and 15 ms with one
    (benchmarks.proxy_overhead shows what it does to serve's CPU per request). A sidecar
    should not take a second core for its monitoring.
    """
    # threadpoolctl limits the libraries already loaded: load numpy's and scipy's BLAS first
    import numpy  # noqa: F401
    import scipy.linalg  # noqa: F401
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")  # restore_original_limits() undoes it


def _cmd_demo(args: argparse.Namespace) -> int:
    from service.demo.runner import main_for_cli

    if args.duration <= 0 or args.rate <= 0:
        print("--duration and --rate must be positive", file=sys.stderr)
        return 2
    return main_for_cli(args)


def _cmd_incidents(args: argparse.Namespace) -> int:
    import sqlite3

    from service.store.incidents import IncidentStore, IncidentStoreError, UnknownIncidentError
    from service.store.incidents_cli import format_incident, format_incident_list

    if args.state_dir:
        state_dir = Path(args.state_dir)
    elif args.config:
        state_dir = _load_or_exit(args.config).state_dir
    else:
        state_dir = Path("./outrider-state")
    database = state_dir / "incidents.sqlite"
    if not database.exists():
        print(f"no incidents database at {database}", file=sys.stderr)
        return 1
    try:
        with IncidentStore(database) as store:
            if args.incidents_command == "list":
                incidents = store.list_incidents(status=args.status, limit=args.limit)
                sys.stdout.write(format_incident_list(incidents, args.json))
            else:
                sys.stdout.write(format_incident(store.get_incident(args.id), args.json))
    except (UnknownIncidentError, IncidentStoreError) as error:  # their messages name it
        print(str(error), file=sys.stderr)
        return 1
    except sqlite3.DatabaseError as error:
        print(f"cannot read the incidents database {database}: {error}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="outrider",
        description="Drift, OOD and robustness monitoring sidecar for OIP model servers.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    version = commands.add_parser("version", help="print the version")
    version.set_defaults(func=_cmd_version)

    config = commands.add_parser("config", help="work with configuration files")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    check = config_commands.add_parser("check", help="validate config files, naming every error")
    check.add_argument("files", nargs="+", metavar="FILE")
    check.add_argument("-q", "--quiet", action="store_true", help="no normalised summary")
    check.set_defaults(func=_cmd_config_check)

    modelserver = commands.add_parser(
        "modelserver", help="serve an ONNX model over the Open Inference Protocol (gRPC)"
    )
    modelserver.add_argument("--model", help="ONNX file (default: build the demo model)")
    modelserver.add_argument(
        "--demo",
        default="digits",
        choices=["digits", "mnist"],
        help="demo model to build when --model is not given",
    )
    modelserver.add_argument(
        "--state-dir", default="./outrider-state", help="where the demo model is built and cached"
    )
    modelserver.add_argument("--name", default="demo", help="model name clients ask for")
    modelserver.add_argument("--version", default="1", help="model version served")
    modelserver.add_argument("--host", default="127.0.0.1")
    modelserver.add_argument("--port", type=int, default=8000)
    modelserver.add_argument("--max-message-bytes", type=int, default=64 * 1024 * 1024)
    modelserver.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    modelserver.set_defaults(func=_cmd_modelserver)

    demo = commands.add_parser(
        "demo",
        help="the bundled model server, outrider in front of it, and drifting traffic (~3 min)",
    )
    demo.add_argument(
        "--duration",
        type=float,
        default=140.0,
        help="seconds of traffic, split in-distribution / drift / OOD",
    )
    demo.add_argument("--rate", type=float, default=100.0, help="requests per second")
    demo.add_argument("--dataset", default="digits", choices=["digits", "mnist"])
    demo.add_argument(
        "--state-dir",
        default="./outrider-state/demo",
        help="where the model, references, incidents and plots go",
    )
    view = demo.add_mutually_exclusive_group()
    view.add_argument(
        "--live",
        dest="live",
        action="store_true",
        default=None,
        help="live terminal view (default on a terminal)",
    )
    view.add_argument(
        "--no-live", dest="live", action="store_false", help="a status line every 10 s instead"
    )
    demo.set_defaults(func=_cmd_demo)

    serve = commands.add_parser("serve", help="run the sidecar: relay, monitor, alerts, admin HTTP")
    serve.add_argument(
        "--config",
        type=Path,
        default=None,
        help="YAML config (default: built-in defaults and OUTRIDER_* variables)",
    )
    serve.set_defaults(func=_cmd_serve)

    from service.monitor.reference_check_cli import add_reference_check_subcommand
    from service.monitor.reference_cli import add_reference_subcommands

    reference_commands = add_reference_subcommands(commands, load_config=_load_or_exit)
    add_reference_check_subcommand(reference_commands, load_config=_load_or_exit)

    from service.probes.cli import add_probes_subcommands

    add_probes_subcommands(commands)

    incidents = commands.add_parser("incidents", help="list and show incidents")
    incidents_commands = incidents.add_subparsers(dest="incidents_command", required=True)
    for name in ("list", "show"):
        sub = incidents_commands.add_parser(name, help=f"{name} incidents")
        where = sub.add_mutually_exclusive_group()
        where.add_argument("--config", type=Path, help="read state_dir from this config")
        where.add_argument("--state-dir", help="state directory (default ./outrider-state)")
        sub.add_argument("--json", action="store_true", help="JSON instead of a table")
        if name == "show":
            sub.add_argument("id", type=int, help="incident id")
        else:
            sub.add_argument("--status", choices=["open", "resolved"], default=None)
            sub.add_argument("--limit", type=int, default=50)
        sub.set_defaults(func=_cmd_incidents)
    return parser


# What a shell reports for a command killed by SIGPIPE (128 + 13), as `yes | head -1` does.
EXIT_BROKEN_PIPE = 141


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`outrider config check x.yaml | head -1`): stop quietly, as
        # other command-line tools do, and keep Python from complaining again when it
        # flushes stdout at exit.
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    return status


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real stdout to redirect (captured in tests)
        pass


if __name__ == "__main__":
    sys.exit(main())
