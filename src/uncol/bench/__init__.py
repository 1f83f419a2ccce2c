"""``uncol bench``: a grid of methods × labelled ratios × seeds from one YAML file, resumable, with tables.

``grid.py`` parses a bench file and expands it into cells, ``run.py`` runs them (skipping finished
ones) and ``tables.py`` writes results.csv/json/md and a plot; ``uncol.cli.bench`` is the subcommand.
"""
from uncol.bench.grid import BenchSpec, Cell, MethodSpec, expand, load_bench
from uncol.bench.run import run_bench

__all__ = ["BenchSpec", "Cell", "MethodSpec", "expand", "load_bench", "run_bench"]
