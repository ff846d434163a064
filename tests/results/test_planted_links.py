"""Links a neighbour plants where tlbench writes (a shared results or report folder): replaced, never written through."""

from __future__ import annotations

import os
import time

import pytest

from tlbench.plan.leases import Leases
from tlbench.report import build as report

REPORT_FILES = ["index.md", "index.html", "tables/t-tiny.csv", "tables/claims.csv", "figures/reported-vs-reproduced.png",
                "figures/intervals-t-tiny.png"]  # fmt: skip


@pytest.mark.slow  # draws the report's figures
def test_a_report_replaces_links_planted_at_its_files_and_leaves_their_targets(grid_and_results, tmp_path):
    grid_path, results = grid_and_results
    out = tmp_path / "report"
    targets = {}
    for name in REPORT_FILES:
        target = tmp_path / "precious" / name.replace("/", "-")
        target.parent.mkdir(exist_ok=True)
        target.write_text(f"keep {name}")
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).symlink_to(target)
        targets[name] = target
    assert report.main(["--grid", str(grid_path), "--results", str(results), "--out", str(out)]) == 0
    for name, target in targets.items():
        assert target.read_text() == f"keep {name}", name
        assert (out / name).is_file() and not (out / name).is_symlink(), name
    assert "85.0 ± 7.1 (2)" in (out / "index.md").read_text()
    assert (out / "figures" / "intervals-t-tiny.png").read_bytes().startswith(b"\x89PNG")


def test_a_claims_heartbeat_does_not_touch_the_target_of_a_link_swapped_in(tmp_path):
    claims = Leases(tmp_path / "claims", heartbeat_s=0.01)
    assert claims.take("t1")
    target = tmp_path / "precious"
    target.write_text("keep")
    os.utime(target, (1_000_000, 1_000_000))
    claims.path("t1").unlink()
    claims.path("t1").symlink_to(target)
    time.sleep(0.2)  # several heartbeats
    claims.release_all()
    assert target.stat().st_mtime == 1_000_000 and target.read_text() == "keep"
