"""Issue 23, the third fidelity pass: the readings and keys it adds, and how the report counts claims.

Frozen BatchNorm in train mode (004's open choice), lr per layer as 002's code meant it, the text's
augmentation without the code's crop, fp32 with TF32 off, a pool's class counts checked against the
report's, best-epoch train accuracy, the report's own claims counted apart from ours, and times judged
only between trials that ran the same way.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import TINY_GRID, fake_row, resolved, typed

from tlbench.grid import Grid
from tlbench.grid.trials import trial_id
from tlbench.registries.augmentations import AUGMENTATIONS
from tlbench.report import build as report
from tlbench.results.store import Store
from tlbench.trial import data, features, pipeline, train
from tlbench.trial import networks as models
from tlbench.trial.config import DatasetConfig, ModelConfig

ROOT = Path(__file__).resolve().parents[2]


def _resnet18(freeze="head", frozen_bn="eval"):
    torch.manual_seed(0)
    built = models.build(ModelConfig(arch="resnet18", weights="none", hidden=(), dropout=0.0), 3)
    plan = models.freeze_plan(freeze, built, frozen_bn)
    models.apply_stage(built, plan, 0)
    return built, plan


def _batchnorm_modes(built) -> set[bool]:
    return {m.training for m in built.module.modules() if isinstance(m, torch.nn.BatchNorm2d)}


def test_frozen_batchnorm_stays_in_eval_mode_by_default_and_trains_with_frozen_bn_train():
    built, plan = _resnet18()
    models.set_train_mode(built, plan)
    assert _batchnorm_modes(built) == {False}  # head only: every BatchNorm is frozen, its statistics kept
    built, plan = _resnet18(frozen_bn="train")
    models.set_train_mode(built, plan)
    assert _batchnorm_modes(built) == {True}  # plain model.train(): frozen BatchNorm re-estimates on the new data
    before = built.module.bn1.running_mean.clone()
    built.module(torch.randn(4, 3, 32, 32))
    assert not torch.equal(before, built.module.bn1.running_mean)


def test_train_mode_epochs_still_decides_where_it_is_set():
    built, plan = _resnet18(frozen_bn="train")
    models.set_train_mode(built, plan, epoch=1, train_mode_epochs=1)
    assert _batchnorm_modes(built) == {False} and not built.module.training


def test_the_feature_cache_refuses_frozen_bn_train_and_the_texts_augmentation():
    built, plan = _resnet18(frozen_bn="train")
    config = typed(model={"arch": "resnet18", "weights": "none"}, train={"freeze": "head", "frozen_bn": "train"})
    assert "train.frozen_bn: train" in features.find_cut(built, plan, config.train, 32)
    config = typed(model={"arch": "resnet18", "weights": "none"}, train={"freeze": "head", "augment": "flip_rotate_jitter"})
    assert "change the input every epoch" in features.find_cut(built, models.freeze_plan("head", built), config.train, 32)


def test_head_lr_puts_the_head_apart_and_the_block_nearest_it_at_lr():
    """002's intent (new_main.py:226-227, :252): fc 1e-3, layer4 1e-2, layer3 1e-3, layer2 1e-4, layer1 1e-5."""
    built, _ = _resnet18()
    lrs = {}
    for group in models.param_groups(built, 0.01, 0.1, head_lr=1e-3):
        for name, param in built.module.named_parameters():
            if any(param is p for p in group["params"]):
                lrs[name.split(".")[0]] = group["lr"]
    assert lrs["fc"] == pytest.approx(1e-3)
    for block, lr in (("layer4", 1e-2), ("layer3", 1e-3), ("layer2", 1e-4), ("layer1", 1e-5)):
        assert lrs[block] == pytest.approx(lr), block
    # Without head_lr, as before: the head at lr, layer4 at lr * decay.
    plain = models.param_groups(built, 0.01, 0.1)
    assert [g["lr"] for g in plain][:2] == pytest.approx([0.01, 0.001])


def test_flip_rotate_jitter_is_the_strong_augmentation_without_its_crop():
    names = [type(t).__name__ for t in AUGMENTATIONS["flip_rotate_jitter"].per_image(64).transforms]
    assert names == ["RandomHorizontalFlip", "RandomRotation", "ColorJitter"]
    assert [type(t).__name__ for t in AUGMENTATIONS["strong"].per_image(64).transforms] == ["RandomResizedCrop", *names]
    images = torch.randint(0, 255, (3, 3, 16, 16), dtype=torch.uint8)
    out = pipeline.augment(images, "flip_rotate_jitter", torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == torch.uint8


def test_set_tf32_turns_it_off_and_restores_torchs_defaults():
    before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    try:
        train.set_tf32(False)
        assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == (False, False)
        train.set_tf32(None)
        assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == train.TORCH_TF32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def test_expect_counts_is_a_check_never_part_of_the_trial_id():
    config = resolved()
    assert trial_id(config) == trial_id(resolved(dataset={"expect_counts": {"class0": 1}}))
    assert trial_id(config) != trial_id(resolved(train={"frozen_bn": "train"}))  # a setting is


def test_the_loader_warns_where_the_pool_differs_from_the_reports_counts(capsys):
    cfg = DatasetConfig.from_dict({**resolved()["dataset"], "source": "real", "expect_counts": {"female": 3, "male": 1}})
    labels = np.array([0, 0, 0, 1])
    assert data.count_warnings(cfg, labels, ["female", "male"]) == []
    assert "female 3, male 1 (the report: female 3, male 1)" in capsys.readouterr().out
    warnings = data.count_warnings(cfg, np.array([0, 0, 1, 1]), ["female", "male"])
    assert len(warnings) == 1 and "female 2, male 2" in warnings[0] and "the report female 3, male 1" in warnings[0]


def test_the_loader_prints_the_imbalanced_split_by_group(capsys):
    config = resolved(dataset={"n_classes": 4, "imbalance": {"minority": "class0", "keep": 0.5}})
    splits = data.load(DatasetConfig.from_dict(config["dataset"]), 32, ".", 0)
    printed = capsys.readouterr().out
    assert f"train {len(splits.train):,} (" in printed and f"val {len(splits.val):,} (" in printed and "class0 " in printed


def test_a_trial_records_the_train_accuracy_of_its_best_val_epoch():
    outcome = train.run_trial(typed(epochs=2, dataset={"n_classes": 4}))
    best = max(outcome.epochs, key=lambda e: e["val_acc"])
    assert outcome.summary["train_acc_at_best_val"] == best["train_acc"]
    assert outcome.summary["data_warning"] is None


# -- the shipped grid -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grid():
    return Grid.load(ROOT / "grid" / "reports.yaml")


def _rows(grid, table_id):
    return next(t for t in grid.tables if t["id"] == table_id)["rows"]


def test_the_grid_runs_both_readings_of_r003s_full_fine_tune(grid):
    rows = {(r["label"], r.get("reading")): r for r in _rows(grid, "r003-approaches")}
    stated = grid.experiment(rows[("full fine-tune", "as stated")]["experiment"]).config
    run = grid.experiment(rows[("full fine-tune", "as run")]["experiment"]).config
    assert stated["dataset"]["val_fraction"] == 0.2 and stated["train"]["normalize"] == "imagenet"
    assert run["dataset"]["val_fraction"] == 0.0 and run["train"]["normalize"] == "half" and run["train"]["train_mode_epochs"] == 1


def test_r004c_has_a_frozen_bn_train_alternative_and_002_states_no_crop(grid):
    alternative = [r for r in _rows(grid, "r004-c-freeze") if r.get("reading") == "alternative"]
    assert {r["label"] for r in alternative} >= {"last layer only"}
    assert all(grid.experiment(r["experiment"]).config["train"]["frozen_bn"] == "train" for r in alternative)
    for table, experiment in (("r002-s1-factors", "r002-s1-factors"), ("r002-s2-factors", "r002-s2-gradual")):
        row = next(r for r in _rows(grid, table) if r["label"] == "data augmentation" and r["reading"] == "as stated")
        (trial,) = {
            t.config["train"]["augment"]
            for t in grid.points(grid.experiment(experiment))
            if t.axes.get("variant") == row["where"]["variant"]
        }
        assert trial == "flip_rotate_jitter"


def test_the_fidelity_profile_runs_fp32_with_tf32_off(grid):
    trials = grid.expand(profile="fidelity")
    assert trials and {(t.config["precision"], t.config["tf32"]) for t in trials} == {("fp32", False)}


def test_every_new_main_citation_names_lines_of_002s_code():
    """Each `new_main.py:<a>-<b>` / `:<n>` in the grid names lines that exist (the text beside them is checked by eye)."""
    found = [p / "shared" / "reports" / "002-code" / "new_main.py" for p in (ROOT.parent, ROOT.parent.parent)]
    code = next((p for p in found if p.exists()), None)
    if code is None:
        pytest.skip("002's code (../shared/reports/002-code) is not beside this checkout")
    n_lines = len(code.read_text().splitlines())
    text = (ROOT / "grid" / "reports.yaml").read_text()
    cited = [int(n) for ref in re.findall(r"new_main\.py:([\d\-, :]+)", text) for n in re.findall(r"\d+", ref)]
    assert cited and max(cited) <= n_lines
    assert "target_to_binary (new_main.py:27-30)" in text  # def at 27, its return at 30


# -- claims: the report's apart from ours; untested; times ---------------------------------------------

CLAIMS = """    metrics: [{key: test_acc, scale: 100, digits: 1}, {key: train_s, digits: 1}]
    claims:
      - {claim: "fast beats slow", row_a: fast, row_b: slow}
      - {claim: "From the table: slow beats fast", row_a: slow, row_b: fast}
      - {claim: "fast and slow are alike", untested: "a statement of no difference"}
      - {claim: "fast is quicker", row_a: fast, row_b: slow, metric: train_s, better: lower}
"""


def _report(write_grid, tmp_path, cache_fast: str) -> tuple[pd.DataFrame, str]:
    text = TINY_GRID.replace("seeds: [0, 1]", "seeds: [0, 1, 2]").replace("    metrics: [{key: test_acc, scale: 100, digits: 1}]\n", CLAIMS)
    grid_path = write_grid(text)
    store = Store(tmp_path / "results")
    for spec in Grid.load(grid_path).expand():
        fast = spec.axes["train.lr"] == 3e-3
        store.write(fake_row(spec, test_acc=(0.9 if fast else 0.7) + spec.seed / 100, train_s=(10.0 if fast else 20.0) + spec.seed,
                             feature_cache=cache_fast if fast else "off", data_warning=None if fast else "pool differs"), [])  # fmt: skip
    out = tmp_path / "report"
    assert report.main(["--grid", str(grid_path), "--results", str(tmp_path / "results"), "--out", str(out)]) == 0
    return pd.read_csv(out / "tables" / "claims.csv").set_index("claim"), (out / "index.md").read_text()


def test_the_reports_claims_and_ours_are_counted_apart_and_untested_ones_named(write_grid, tmp_path):
    claims, markdown = _report(write_grid, tmp_path, cache_fast="off")
    assert claims.loc["fast beats slow", "source"] == "report" and claims.loc["From the table: slow beats fast", "source"] == "ours"
    assert claims.loc["fast and slow are alike", "verdict"] == "untested: a statement of no difference"
    assert claims.loc["fast is quicker", "verdict"] == "supported"  # both rows ran without the cache
    assert "Claims of the report about this table: 2 supported, 1 untested; ours, from the table: 1 reversed" in markdown
    assert "- warning, slow: pool differs" in markdown and "warning, fast" not in markdown  # the loader's, on its row
    # reading, numbers (5), the report's claims (supported, reversed, unresolved, pending, untested, not compared), ours
    line = next(line for line in markdown.splitlines() if line.startswith("| test.txt | – |"))
    assert line.endswith("| 2 | 0 | 0 | 0 | 1 | 0 | 0 | 1 | 0 | 0 | 0 | 0 |"), line


def test_a_time_claim_is_not_compared_where_one_row_ran_on_the_feature_cache(write_grid, tmp_path):
    claims, _ = _report(write_grid, tmp_path, cache_fast="hit (cut before fc)")
    verdict = claims.loc["fast is quicker", "verdict"]
    assert verdict.startswith("not compared: 'fast' ran on the feature cache") and "--no-feature-cache" in verdict
    assert claims.loc["fast beats slow", "verdict"] == "supported"  # accuracies compare whatever the cache
    assert json.loads(json.dumps(claims.loc["fast is quicker", "diff"])) == pytest.approx(-10.0)
