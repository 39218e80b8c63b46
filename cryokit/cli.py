"""The ``cryokit`` command: one subcommand per job, each a thin call into the library.

Every subcommand is a pair: ``_add_<name>(subparsers)`` declares its arguments and ``_run_<name>(args)``
calls the library. Heavy imports happen inside ``_run_*`` so ``cryokit --help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Callable, Sequence

__all__ = ["main", "build_parser"]


def _add_copick_config(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("copick-config", help="write a copick config and overlay for a Kaggle-layout dataset")
    p.add_argument("--data", required=True, type=Path, help="competition root (holds train/ and test/)")
    p.add_argument("--split", default="train", choices=["train", "test"])
    p.add_argument("--out", required=True, type=Path, help="folder for copick_<split>.json and the overlay")
    p.set_defaults(run=_run_copick_config)


def _run_copick_config(args: argparse.Namespace) -> int:
    from cryokit.io.copick_config import write_copick_project

    config_path = write_copick_project(args.data, args.split, args.out)
    print(f"copick config: {config_path}")
    return 0


# Subcommands in the order ``cryokit --help`` lists them.
_SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_copick_config,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cryokit", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.run(args) or 0)
    except (FileNotFoundError, ValueError, FileExistsError) as error:
        # Bad input: one clear line, no traceback (use -v for the traceback).
        if args.verbose:
            raise
        print(f"cryokit {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
