"""grid/reports.yaml: every experiment and table of the catalogue, and a smoke profile of all of them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

from tlbench.spec import Grid, row_trial_ids

GRID = "grid/reports.yaml"
REPORTS = {"000_fdf072d3ade648fb.txt", "001_01c0c6356b919216.txt", "002_ab7cd0507948075e.txt",
           "003_471c365c4b15c981.txt", "004_92aacdb59c81624b.txt"}
TABLES = {"r000-summary", "r000-test", "r001-table1", "r002-binary", "r002-s1-layers", "r002-s1-factors", "r002-s2-factors",
          "r002-imbalance-layers", "r002-imbalance-factors", "r002-resnet50-l0", "r002-resnet50-l3", "r002-resnet50-avg",
          "r002-bn", "r003-approaches", "r004-a-fractions", "r004-b-models", "r004-c-freeze"}  # fmt: skip


def test_full_profile_covers_all_five_reports_with_at_least_three_seeds():
    proc = subprocess.run([sys.executable, "-m", "tlbench.grid", "list", "--json"], capture_output=True, text=True, check=True, timeout=120)
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert {r["report"] for r in rows} == REPORTS
    # 49 distinct configs (7 are shared by two table rows) x 3 seeds, and 2 more seeds for 002's 5 depths
    assert len(rows) == 49 * 3 + 5 * 2
    seeds_per_config = Counter((r["experiment"], json.dumps(r["axes"], sort_keys=True)) for r in rows)
    assert len(seeds_per_config) == 49
    assert min(seeds_per_config.values()) >= 3
    assert set(Counter(r["seed"] for r in rows)) == {0, 1, 2, 3, 4}
    assert len({r["trial_id"] for r in rows}) == len(rows)


def test_every_table_of_the_catalogue_with_its_reported_numbers():
    grid = Grid.load(GRID)
    assert {t["id"] for t in grid.tables} == TABLES
    for table in grid.tables:
        for row in table["rows"]:
            ids = row_trial_ids(grid, row)
            assert len(ids) >= 3, (table["id"], row["label"])  # every row is backed by trials of 3 seeds
    reported = sum(1 for t in grid.tables for r in t["rows"] for v in (r.get("reported") or {}).values() if v is not None)
    assert reported == 95  # every number the catalogue quotes, per table


def test_shared_configs_run_once():
    grid = Grid.load(GRID)
    s1_l1 = set(row_trial_ids(grid, {"experiment": "r002-s1-layers", "where": {"train.freeze": {"last": 1}}}))
    bn_head = set(row_trial_ids(grid, {"experiment": "r002-bn", "where": {"train.freeze": "head"}}))
    assert bn_head < s1_l1 and (len(bn_head), len(s1_l1)) == (3, 5)  # the same trials; 002's depths have 2 more seeds
    l0 = set(row_trial_ids(grid, {"experiment": "r002-resnet50", "where": {"train.freeze": {"last": 0}, "variant": "sgd"}}))
    l1 = set(row_trial_ids(grid, {"experiment": "r002-resnet50", "where": {"train.freeze": {"last": 1}, "variant": "sgd"}}))
    assert l0 == l1 and len(l0) == 3


def test_smoke_profile_runs_every_experiment_on_synthetic_twins():
    trials = Grid.load(GRID).expand(profile="smoke")
    assert {t.config["dataset"]["source"] for t in trials} == {"synthetic"}
    assert {t.config["model"]["weights"] for t in trials} == {"none"}
    assert {t.seed for t in trials} == {0} and {t.config["epochs"] for t in trials} == {1}
    named = {name for t in trials for name in t.experiments}
    assert named == {e.name for e in Grid.load(GRID).experiments}


def test_plan_costs_every_experiment_and_totals_them():
    proc = subprocess.run([sys.executable, "-m", "tlbench.grid", "plan", "--profile", "smoke"], capture_output=True, text=True, check=True, timeout=120)
    rows = {line.split()[0]: line.split()[1:] for line in proc.stdout.splitlines()[2:] if line and line.split()[0].startswith(("r0", "total"))}
    assert len(rows) == 16  # 15 experiments and the total
    assert int(rows["total"][0]) == 46 == sum(int(v[0]) for k, v in rows.items() if k != "total")
    tflops = {k: float(v[2].replace(",", "")) for k, v in rows.items()}
    assert tflops["r000-celeba-vgg16"] > tflops["r002-binary"] > 0  # VGG16 at 4 configs outweighs one head-only ResNet18
