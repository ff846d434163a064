"""The command line's import contract: no module of the driver's folders (tlbench/grid, registries, plan, results,
report) imports torch or Ray when imported.

Listing, planning, `status` and the report need neither, and importing them costs seconds, so both are imported
only where a trial trains or a run schedules. Each check runs in a fresh interpreter: this test process has
long imported both.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "ray")  # top-level packages the light entry points must not pull in

# Runs in the fresh interpreter: imports the light entry points and prints which heavy modules came with them.
PROBE = f"""
import importlib, json, pkgutil, sys
import tlbench
# Every module of the driver's folders (the grid, registries, planning, results, the report), and the entry points.
driver = ("grid", "registries", "plan", "results", "report")
wanted = [m.name for m in pkgutil.walk_packages(tlbench.__path__, "tlbench.")
          if m.name.split(".")[1] in driver and not m.name.endswith("__main__")]
for name in wanted:
    importlib.import_module(name)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
print(json.dumps({{"imported": wanted, "heavy": heavy}}))
"""


def fresh_python(*args: str) -> subprocess.CompletedProcess:
    # cwd is the repository root, so the fresh interpreter imports this tree's tlbench, as the tests here do.
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_the_grid_and_report_entry_points_import_without_torch_or_ray():
    proc = fresh_python("-c", PROBE)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"tlbench.grid", "tlbench.grid.cli", "tlbench.report.build", "tlbench.results.store"} <= set(seen["imported"])
    offenders = sorted({m.split(".")[0] for m in seen["heavy"]})
    assert not offenders, (
        f"importing {', '.join(seen['imported'])} pulled in {offenders} ({len(seen['heavy'])} modules, e.g. "
        f"{seen['heavy'][:5]}): import them inside the function that trains or schedules, not at module level"
    )


def test_grid_help_exits_0_and_names_every_subcommand():
    proc = fresh_python("-m", "tlbench.grid", "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: ")
    for subcommand in ("run", "list", "plan", "status"):
        assert subcommand in proc.stdout.split("\n", 1)[0], f"`{subcommand}` missing from the usage line: {proc.stdout[:200]}"
