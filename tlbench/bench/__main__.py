"""`python -m tlbench.bench`: the command lives in speed.py."""

from __future__ import annotations

from tlbench.bench.speed import main
from tlbench.process_exit import run_command

run_command(main)
