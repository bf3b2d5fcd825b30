"""The `rbr` program: `rbr stack` starts without importing every other command.

`rbr stack` is what `make run` runs, and its start-up time is the stack's: it loads only its
own module, so the broker and the S3 endpoint start about as soon as Python does. Every other
command goes through `rbr_cli.main`, with the local stack's settings loaded.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Runs `rbr`."""
    if command(sys.argv[1:]) == "stack":
        from rbr_cli.stack import stack_app  # noqa: PLC0415 - the point is not to import the rest

        stack_app(args=sys.argv[1:], prog_name="rbr")
        return
    from rbr_cli.main import main as run_cli  # noqa: PLC0415 - see above

    run_cli()


def command(arguments: list[str]) -> str | None:
    """Returns the command named on a command line (the first word that is not an option)."""
    return next((word for word in arguments if not word.startswith("-")), None)
