"""`python -m rbr_simulator`: the same as `rbr simulate`."""

from __future__ import annotations

import typer

from rbr_simulator.cli import simulate


def main() -> None:
    """Runs the `simulate` command with the process's arguments."""
    typer.run(simulate)


if __name__ == "__main__":
    main()
