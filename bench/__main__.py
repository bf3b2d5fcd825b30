"""Runs every benchmark module and prints a table of figures against their goals.

Each `bench/bench_<area>.py` exposes `run(quick: bool) -> list[Figure]`. Results are written
to bench/results/latest.json; docs/benchmarks.md has the figures of full runs on the dev machine.

    python -m bench            # all benchmarks
    python -m bench parser     # only bench_parser.py
    python -m bench --quick    # smaller inputs, for a smoke run
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

from bench.figures import Figure

BENCH_DIR = Path(__file__).parent


def _modules(selected: list[str]) -> list[str]:
    names = sorted(p.stem.removeprefix("bench_") for p in BENCH_DIR.glob("bench_*.py"))
    unknown = [name for name in selected if name not in names]
    if unknown:
        sys.exit(f"unknown benchmark(s) {unknown}; available: {names}")
    return selected or names


def main() -> int:
    """Runs the benchmarks named on the command line (all by default)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("areas", nargs="*", help="benchmark areas to run")
    parser.add_argument("--quick", action="store_true", help="smaller inputs (smoke run)")
    args = parser.parse_args()
    figures: list[Figure] = []
    for area in _modules(args.areas):
        print(f"== {area}", flush=True)
        started = time.monotonic()
        module = importlib.import_module(f"bench.bench_{area}")
        area_figures: list[Figure] = module.run(quick=args.quick)
        for figure in area_figures:
            print(f"   {figure.line()}", flush=True)
        print(f"   ({time.monotonic() - started:.0f}s)")
        figures.extend(area_figures)
    _write(figures, args.quick)
    return 0


def _write(figures: list[Figure], quick: bool) -> None:
    results = BENCH_DIR / "results"
    results.mkdir(exist_ok=True)
    document = {
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}",
        "python": platform.python_version(),
        "quick": quick,
        "figures": [asdict(f) for f in figures],
    }
    (results / "latest.json").write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
