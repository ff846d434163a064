"""The trainer: it learns, it is deterministic, and divergence is a result."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import changed, resolved, typed

from tlbench.grid import TrialSpec
from tlbench.trial import metrics, pipeline, train
from tlbench.trial.execute import execute


def test_small_cnn_beats_chance_in_one_epoch_on_synthetic_data():
    outcome = train.run_trial(typed(dataset={"n_classes": 4}, epochs=1))
    assert outcome.status == "ok"
    assert outcome.summary["test_acc"] > 0.25 + 0.25  # chance is 0.25
    assert outcome.summary["n_train"] == 320 and outcome.summary["n_val"] == 80 and outcome.summary["n_test"] == 200
    assert len(outcome.epochs) == 1 and outcome.summary["images_per_s"] > 0


@pytest.mark.slow
def test_resnet18_from_scratch_beats_chance_at_small_size():
    config = typed(
        model={"arch": "resnet18", "weights": "none"},
        dataset={"n_classes": 3, "n_train": 300, "n_test": 150},
        train={"lr": 1e-3, "batch_size": 16},
        epochs=2,
    )
    assert train.run_trial(config).summary["test_acc"] > 1 / 3 + 0.15


@pytest.mark.slow
def test_same_config_twice_gives_identical_metrics():
    config = typed(train={"augment": "strong", "sampler": "oversample", "lr": 3e-3}, dataset={"priors": [0.4, 0.3, 0.2, 0.1]})
    a, b = train.run_trial(config), train.run_trial(config)
    for key in ("test_acc", "test_loss", "train_loss", "val_loss", "f1_macro"):
        assert a.summary[key] == b.summary[key], key
    assert a.summary["confusion"] == b.summary["confusion"]
    other = train.run_trial(changed(config, seed=1))
    assert other.summary["test_loss"] != a.summary["test_loss"]


@pytest.mark.slow
def test_nan_loss_is_a_diverged_result_with_its_metrics():
    outcome = train.run_trial(typed(train={"lr": 1e30, "optimizer": "sgd", "momentum": 0.9}, epochs=3))
    assert outcome.status == "diverged"
    assert len(outcome.epochs) < 3 or math.isnan(outcome.epochs[-1]["train_loss"])
    assert "test_acc" in outcome.summary and outcome.summary["epochs_run"] == len(outcome.epochs)


@pytest.mark.slow
def test_lr_probe_scores_every_candidate_and_retrains_on_train_plus_val():
    config = typed(train={"protocol": "lr_probe", "probe_lrs": [1e-6, 3e-3], "probe_steps": 8}, epochs=1)
    outcome = train.run_trial(config)
    scores = outcome.summary["probe_scores"]
    assert set(scores) == {"1e-06", "0.003"}
    assert scores["0.003"] > scores["1e-06"]  # a useless lr scores worse on this learnable data
    assert outcome.summary["lr_chosen"] == 3e-3
    assert outcome.summary["n_train"] == 400  # train + val


@pytest.mark.slow
def test_binary_bce_with_one_logit_learns():
    config = typed(dataset={"n_classes": 2, "priors": [0.7, 0.3]}, train={"loss": "bce", "class_weights": "balanced"})
    outcome = train.run_trial(config)
    assert outcome.summary["test_acc"] > 0.7 + 0.1  # beats always-majority


def test_oversampling_draws_classes_about_equally():
    labels = torch.tensor([0] * 900 + [1] * 100)
    order = pipeline.epoch_order(labels, "oversample", torch.Generator().manual_seed(0))
    share = float((labels[order] == 1).float().mean())
    assert 0.45 < share < 0.55 and len(order) == 1000


def test_a_failing_trial_becomes_an_error_row_with_its_traceback():
    config = resolved(model={"arch": "tlbench.tiny:does_not_exist"})
    spec = TrialSpec("abc", "e", "r.txt", 0, {}, config, ("e",))
    row, epochs = execute(spec, "unused", {"profile": "test"})
    assert row["status"] == "error" and epochs == []
    assert "cannot import does_not_exist" in row["error"] and "Traceback" in row["traceback"]


def test_metrics_match_hand_computed_values():
    labels = np.array([0, 0, 0, 1, 1, 2])
    preds = np.array([0, 0, 1, 1, 2, 2])
    m = metrics.summarize(labels, preds, 3)
    assert m["acc"] == pytest.approx(4 / 6)
    assert m["per_class"]["precision"] == pytest.approx([1.0, 0.5, 0.5])
    assert m["per_class"]["recall"] == pytest.approx([2 / 3, 0.5, 1.0])
    assert m["recall_weighted"] == pytest.approx(m["acc"])  # weighted recall is accuracy, as 001's table shows
    assert m["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


class _DictCheckpointer:
    """Keeps states in memory; dies (raises) after `die_after` saves, like a worker cut off."""

    def __init__(self, die_after: int | None = None):
        self.state, self.saves, self.die_after = None, 0, die_after

    def load(self):
        return self.state

    def save(self, state):
        import copy

        self.state = copy.deepcopy(state)
        self.saves += 1
        if self.die_after is not None and self.saves >= self.die_after:
            raise RuntimeError("worker died")


@pytest.mark.parametrize("extra", [{}, {"train": {"protocol": "lr_probe", "probe_lrs": [1e-4, 3e-3], "probe_steps": 3}}])
@pytest.mark.slow
def test_a_trial_resumed_from_its_checkpoint_ends_as_if_never_interrupted(extra):
    config = typed(epochs=4, train={"augment": "hflip", "lr_step": 2, **extra.get("train", {})})
    whole = train.run_trial(config)
    keeper = _DictCheckpointer(die_after=2)
    with pytest.raises(RuntimeError, match="worker died"):
        train.run_trial(config, checkpointer=keeper)
    keeper.die_after = None
    resumed = train.run_trial(config, checkpointer=keeper)
    assert resumed.summary["resumed_from_epoch"] == 2
    assert [e["train_loss"] for e in resumed.epochs] == [e["train_loss"] for e in whole.epochs]
    for key in ("test_acc", "test_loss", "train_loss", "lr_chosen"):
        assert resumed.summary[key] == whole.summary[key], key


@pytest.mark.slow
def test_torch_compile_flag_gives_the_same_results(tmp_path):
    config = typed(epochs=1, precision="fp32")
    compiled = train.run_trial(config, tmp_path, compile=True)
    plain = train.run_trial(config, tmp_path)
    assert compiled.summary["compiled"] and not plain.summary["compiled"]
    assert compiled.summary["test_acc"] == plain.summary["test_acc"]
    assert compiled.summary["test_loss"] == pytest.approx(plain.summary["test_loss"], rel=1e-4)


@pytest.mark.slow
def test_lr_probe_retrain_reports_no_val_score_since_val_trains():
    config = typed(train={"protocol": "lr_probe", "probe_lrs": [3e-3], "probe_steps": 2}, epochs=1)
    epoch = train.run_trial(config).epochs[0]
    assert math.isnan(epoch["val_acc"]) and math.isnan(epoch["val_loss"])
