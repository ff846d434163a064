"""`python -m tlbench.grid {run,list,plan,status}`: the command line lives in `tlbench/grid/cli.py`."""

from __future__ import annotations

from tlbench.grid.cli import main
from tlbench.process_exit import run_command

run_command(main)
