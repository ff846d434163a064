"""`python -m tlbench.grid {run,list,plan,status}`: the command line lives in `tlbench/cli.py`."""

from tlbench.cli import main

raise SystemExit(main())
