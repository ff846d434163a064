"""`tlbench run|list|plan|status|report|bench ...`: one console script over the `python -m` commands, which stay.

    tlbench run --profile smoke        is  python -m tlbench.grid run --profile smoke
    tlbench report --results results   is  python -m tlbench.report --results results
    tlbench bench --scale              is  python -m tlbench.bench --scale

Each word hands the rest of the line, unchanged, to the command it names: the flags, messages and exit
statuses are that command's.
"""

from __future__ import annotations

import sys

GRID_COMMANDS = ("run", "list", "plan", "status")
COMMANDS = (*GRID_COMMANDS, "report", "bench")
USAGE = f"usage: tlbench {{{','.join(COMMANDS)}}} [flags of that command; tlbench <command> --help lists them]"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(f"{USAGE}\n\n{__doc__}")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command in GRID_COMMANDS:
        from tlbench.grid.cli import main as grid_main

        return grid_main([command, *rest])
    if command == "report":
        from tlbench.report.build import main as report_main

        return report_main(rest)
    if command == "bench":
        from tlbench.bench.speed import main as bench_main

        return bench_main(rest)
    print(f"{USAGE}\ntlbench: error: unknown command {command!r}", file=sys.stderr)
    return 2


def entry() -> None:
    """The console script's entry point: ends as the `python -m` commands end (tlbench/process_exit.py)."""
    from tlbench.process_exit import run_command

    run_command(main)
