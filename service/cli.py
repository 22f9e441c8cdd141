"""The `outrider` command line: argument parsing and dispatch, nothing more.

Each subcommand converts its arguments, calls a transport-free function elsewhere, and
turns the outcome into an exit status: 0 success, 1 failure, 2 bad usage or config.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from service.version import __version__


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
        print(f"serving {args.name} (version {args.version}) on {args.host}:{server.port}",
              flush=True)
        await serve_until_signalled(server)

    try:
        asyncio.run(run())
    except OSError as error:
        print(f"cannot start the model server: {error}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="outrider",
        description="Drift, OOD and robustness monitoring sidecar for OIP model servers.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    version = commands.add_parser("version", help="print the version")
    version.set_defaults(handler=_cmd_version)

    config = commands.add_parser("config", help="work with configuration files")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    check = config_commands.add_parser("check", help="validate config files, naming every error")
    check.add_argument("files", nargs="+", metavar="FILE")
    check.add_argument("-q", "--quiet", action="store_true", help="no normalised summary")
    check.set_defaults(handler=_cmd_config_check)

    modelserver = commands.add_parser(
        "modelserver", help="serve an ONNX model over the Open Inference Protocol (gRPC)"
    )
    modelserver.add_argument("--model", help="ONNX file (default: build the demo model)")
    modelserver.add_argument("--demo", default="digits", choices=["digits", "mnist"],
                             help="demo model to build when --model is not given")
    modelserver.add_argument("--state-dir", default="./outrider-state",
                             help="where the demo model is built and cached")
    modelserver.add_argument("--name", default="demo", help="model name clients ask for")
    modelserver.add_argument("--version", default="1", help="model version served")
    modelserver.add_argument("--host", default="127.0.0.1")
    modelserver.add_argument("--port", type=int, default=8000)
    modelserver.add_argument("--max-message-bytes", type=int, default=64 * 1024 * 1024)
    modelserver.add_argument("--log-level", default="info",
                             choices=["debug", "info", "warning", "error"])
    modelserver.set_defaults(handler=_cmd_modelserver)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.handler(args)
    except KeyboardInterrupt:
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
