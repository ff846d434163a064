"""`python -m tlbench.report`: the command lives in build.py."""

from __future__ import annotations

from tlbench.process_exit import run_command
from tlbench.report.build import main

run_command(main)
