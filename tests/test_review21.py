"""Red-team findings on issue 21's fixes (review21): each a scenario the fixes' own tests left open."""

from __future__ import annotations

import math

from helpers import typed

from tlbench import train


def test_a_network_broken_by_its_last_step_is_diverged_not_a_chance_level_measurement():
    # One batch per epoch: its loss is finite (checked before the step), the step with this lr makes every
    # weight NaN, so each test logit is NaN and argmax says class 0: a 1/3 "accuracy" that measures nothing.
    config = typed(
        epochs=1, dataset={"n_classes": 3, "n_train": 60, "n_test": 30}, train={"optimizer": "sgd", "lr": 1e30, "batch_size": 64}
    )
    outcome = train.run_trial(config, feature_cache=False)
    assert math.isfinite(outcome.epochs[-1]["train_loss"])  # the per-batch check saw nothing
    assert not math.isfinite(outcome.summary["test_loss"])
    assert outcome.status == "diverged"
