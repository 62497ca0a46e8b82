"""The `mamsf` command."""

import argparse
import sys

from keras_mamsf.cli import (
    ablate,
    compare,
    demo,
    evaluate,
    export,
    inspect_data,
    predict,
    prepare,
    synth,
    train,
)
from keras_mamsf.cli.errors import CommandError

SUBCOMMANDS = {"synth": synth, "inspect": inspect_data, "prepare": prepare, "train": train, "evaluate": evaluate,
               "compare": compare, "ablate": ablate, "export": export, "predict": predict, "demo": demo}


def build_parser():
    parser = argparse.ArgumentParser(
        prog="mamsf",
        description="Momentum-Anchored Multi-Scale Fusion for chest X-ray classification.",
    )
    from keras_mamsf.version import __version__

    parser.add_argument("--version", action="version", version=f"keras-mamsf {__version__}")
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's native log lines (hidden by default)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in SUBCOMMANDS.items():
        module.add_parser(commands, name)
    return parser


def main(argv=None, prog=None):
    """Run one command; `prog` names the caller in error lines."""
    args = build_parser().parse_args(argv)
    args.error_prefix = f"{prog}: error:" if prog else f"mamsf {args.command}: error:"
    return execute(args, console=argv is None)


def export_script(format_name, argv=None):
    """`python export/to_<format>.py MODEL.keras --out DIR [options]`: `mamsf export --format <format>` under the
    script's own name (its usage line, its errors), quiet like the `mamsf` command."""
    prog = f"export/to_{format_name}.py"
    parser = argparse.ArgumentParser(prog=prog, description=f"Export a trained MAMSF model to {format_name} "
                                     f"(the same as `mamsf export --format {format_name}`).")
    parser.add_argument("--verbose", action="store_true", help="show TensorFlow's native log lines (hidden by default)")
    export.add_arguments(parser, formats=False)
    args = parser.parse_args(argv)
    args.error_prefix = f"{prog}: error:"
    args.run = lambda parsed: export.run(parsed, formats=format_name)
    return execute(args, console=argv is None)


def execute(args, console):
    """Run a parsed command: a fixable error is one line on stderr and exit status 1. `console`: the process is
    the command (not an in-process caller), so TensorFlow's native log lines are filtered unless --verbose."""
    if console and not args.verbose:
        from keras_mamsf.cli.quiet import filter_native_logs

        filter_native_logs()
    try:
        return args.run(args) or 0
    except (CommandError, ValueError, FileNotFoundError, OSError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"{args.error_prefix} {message}", file=sys.stderr)
        return 1
    except ImportError as error:  # the runtime install runs predict on TFLite files, not the rest
        from keras_mamsf.utils.install import missing_install

        message = missing_install(error)
        if message is None:
            raise
        print(f"{args.error_prefix} {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # `python -m keras_mamsf.cli.main`
    sys.exit(main())
