"""``depthforge`` command line: one module per command, each parse -> config -> one library call -> print.

Errors a user can fix exit 2 with one line naming the file or value and the fix; the logic lives in the package.
"""

from __future__ import annotations

import argparse
import sys

from depthforge.cli import data, demo, evaluate, export, models, predict, serve, share, train
from depthforge.cli.common import UsageError, extra_message, model_options, separate_values, verbosity_options
from depthforge.console import configure_console
from depthforge.version import __version__

DESCRIPTION = ("Train, evaluate and run monocular depth models: one RGB image in, a depth map in metres out. "
               "Run 'depthforge COMMAND --help' for a command's options.")
COMMANDS = (train, evaluate, predict, data, share, demo, export, serve, models)

__all__ = ["build_parser", "main", "separate_values"]


def build_parser() -> argparse.ArgumentParser:
    # No abbreviations: a typo or a shortened flag (--max-rmse for --max-rmse-delta) is an error, not a silent pick
    parser = argparse.ArgumentParser(prog="depthforge", description=DESCRIPTION, allow_abbrev=False)
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common, models = verbosity_options(), model_options()
    for command in COMMANDS:
        command.add_parser(sub, [common, models] if command in (evaluate, predict, serve) else [common])
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    given = list(argv) if argv is not None else sys.argv[1:]
    args, extra = parser.parse_known_args(separate_values(given))
    args.argv = given
    args.verbosity = 1 if args.verbose else -1 if args.quiet else 0
    configure_console(args.verbosity)
    # Overrides may follow options (argparse stops filling positionals at the first option).
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = list(args.overrides) + extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    from depthforge.config import ConfigError
    from depthforge.export import ParityError
    from depthforge.io import DataError
    from depthforge.models import PretrainedWeightsError
    from depthforge.sources import CheckpointError

    try:
        return args.fn(args)
    except UsageError as err:
        print(f"depthforge {args.command}: error: {err}\n(see depthforge {args.command} --help)", file=sys.stderr)
        return 2
    except (ConfigError, DataError, CheckpointError, PretrainedWeightsError, ParityError, FileNotFoundError,
            KeyError, ValueError) as err:
        print(f"depthforge {args.command}: error: {err}", file=sys.stderr)
        return 2
    except ImportError as err:  # an optional dependency the command reached for: which extra brings it
        if (message := extra_message(err)) is None:
            raise
        print(f"depthforge {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
