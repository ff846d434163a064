"""Every trial id of grid/reports.yaml's full and smoke profiles, pinned as they stood at commit aaf7640.

A trial id is the hash of its resolved config: if a change to the code (a new config key, a refactor of
how configs are built or hashed) changes one, every finished trial of that config would rerun. A change
that means to alter an experiment regenerates the file (the snippet below) and says why in its commit.
New trials are appended, existing lines never changed: the third fidelity pass (issue 23) added 24 (full)
and 8 (smoke) and kept every earlier config as a row or axis value of its own.

    python -c "import json; from tlbench.grid import Grid; g = Grid.load('grid/reports.yaml'); \\
      json.dump({p: sorted(f'{t.experiment} seed={t.seed} {t.trial_id}' for t in g.expand(profile=p)) \\
      for p in ('full', 'smoke')}, open('tests/fidelity/pinned/trial_ids.json', 'w'), indent=0)"
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tlbench.grid import Grid

PINNED = json.loads((Path(__file__).parent / "pinned" / "trial_ids.json").read_text())
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("profile", ["full", "smoke"])
def test_the_reports_grid_keeps_its_trial_ids(profile):
    now = sorted(f"{t.experiment} seed={t.seed} {t.trial_id}" for t in Grid.load(ROOT / "grid" / "reports.yaml").expand(profile=profile))
    assert len(now) == len(PINNED[profile])
    changed = sorted(set(now) ^ set(PINNED[profile]))
    assert not changed, f"{len(changed)} trial ids changed (old and new lines): {changed[:6]}"
