"""Checkpoints hold only tensors and plain values: a planted pickle runs no code, a bad file restarts the trial."""

from __future__ import annotations

import pickle

import pytest
import torch
from helpers import typed

from tlbench.trial import checkpoint, train


class FileCheckpointer:
    """Saves with torch.save and reads back through checkpoint.read, as Tune's storage does; can die mid-trial."""

    def __init__(self, path, die_after: int | None = None):
        self.path, self.saves, self.die_after = path, 0, die_after

    def load(self):
        return checkpoint.read(self.path) if self.path.exists() else None

    def save(self, state):
        torch.save(state, self.path)
        self.saves += 1
        if self.die_after is not None and self.saves >= self.die_after:
            raise RuntimeError("worker died")


class Planted:
    """Unpickling this creates `marker`: what a hostile neighbour would leave in a shared --storage."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.slow
def test_a_state_file_round_trips_through_weights_only_and_resumes_exactly(tmp_path):
    config = typed(epochs=3, train={"augment": "hflip"})
    whole = train.run_trial(config)
    keeper = FileCheckpointer(tmp_path / "state.pt", die_after=1)
    with pytest.raises(RuntimeError, match="worker died"):
        train.run_trial(config, checkpointer=keeper)
    keeper.die_after = None
    resumed = train.run_trial(config, checkpointer=keeper)
    assert resumed.summary["resumed_from_epoch"] == 1
    assert [e["train_loss"] for e in resumed.epochs] == [e["train_loss"] for e in whole.epochs]
    assert resumed.summary["test_acc"] == whole.summary["test_acc"]


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("how", ["torch.save", "raw pickle"])
@pytest.mark.slow
def test_a_planted_pickle_runs_no_code_and_the_trial_starts_over(tmp_path, capsys, how):
    marker, state = tmp_path / "pwned", tmp_path / "state.pt"
    payload = {"model": Planted(marker), "progress": {"epochs": [{}], "lr": 0.1}}
    if how == "torch.save":
        torch.save(payload, state)
    else:
        state.write_bytes(pickle.dumps(payload))
    assert not marker.exists()
    outcome = train.run_trial(typed(epochs=2), checkpointer=FileCheckpointer(state))
    assert not marker.exists()  # nothing in the file ran
    assert outcome.status == "ok" and outcome.summary["resumed_from_epoch"] == 0 and len(outcome.epochs) == 2
    assert f"ignoring unreadable checkpoint {state}" in capsys.readouterr().err


@pytest.mark.slow
def test_a_state_of_the_wrong_structure_or_network_is_reported_and_ignored(tmp_path, capsys):
    config = typed(epochs=2)
    keeper = FileCheckpointer(tmp_path / "state.pt", die_after=1)
    with pytest.raises(RuntimeError):
        train.run_trial(config, checkpointer=keeper)
    good = torch.load(keeper.path, weights_only=True)
    broken = {**good, "numpy_rng": [1, 2, 3]}
    torch.save(broken, keeper.path)
    assert checkpoint.read(keeper.path) is None
    assert "wrong structure at numpy_rng" in capsys.readouterr().err
    other = {**good, "model": {k: torch.zeros(3) for k in good["model"]}}  # loads, but fits no layer of this network
    torch.save(other, keeper.path)
    keeper.die_after = None
    outcome = train.run_trial(config, checkpointer=keeper)
    assert outcome.summary["resumed_from_epoch"] == 0 and len(outcome.epochs) == 2
    assert "do not fit the network" in capsys.readouterr().err


def _optimizer_of_other_groups(state):
    groups = state["optimizer"]["param_groups"]
    return {**state["optimizer"], "param_groups": [{**groups[0], "params": groups[0]["params"][:1]}]}


def _moments_of_other_shapes(state):
    moments = {k: {**v, "momentum_buffer": torch.zeros(7)} for k, v in state["optimizer"]["state"].items()}
    return {**state["optimizer"], "state": moments}


@pytest.mark.parametrize("damage, why", [
    (lambda s: {**s, "progress": {k: v for k, v in s["progress"].items() if k != "images_seen"}}, "wrong structure at progress"),
    (lambda s: {**s, "progress": {k: v for k, v in s["progress"].items() if k != "train_seconds"}}, "wrong structure at progress"),
    (lambda s: {**s, "progress": {k: v for k, v in s["progress"].items() if k != "probe_scores"}}, "wrong structure at progress"),
    (lambda s: {**s, "progress": {**s["progress"], "epochs": [{}]}}, "wrong structure at progress"),
    (lambda s: {**s, "progress": {**s["progress"], "epochs": s["progress"]["epochs"] * 3}}, "wrong structure at progress"),
    (lambda s: {**s, "progress": {**s["progress"], "epochs": [{**e, "epoch": i + 1} for i, e in enumerate(s["progress"]["epochs"] * 3)]}},
     "the config runs 3"),
    (lambda s: {**s, "optimizer": _optimizer_of_other_groups(s)}, "it does not restore"),
    (lambda s: {**s, "optimizer": _moments_of_other_shapes(s)}, "it does not restore"),
])  # fmt: skip
@pytest.mark.slow
def test_a_state_that_loads_but_does_not_restore_starts_the_trial_over(tmp_path, capsys, damage, why):
    """Each ended as a trial error (KeyError, ValueError) before, not as a report and a run from epoch 0."""
    config = typed(epochs=3, train={"optimizer": "sgd", "momentum": 0.9})
    keeper = FileCheckpointer(tmp_path / "state.pt", die_after=1)
    with pytest.raises(RuntimeError):
        train.run_trial(config, checkpointer=keeper)
    torch.save(damage(torch.load(keeper.path, weights_only=True)), keeper.path)
    keeper.die_after = None
    fresh = train.run_trial(config)
    outcome = train.run_trial(config, checkpointer=keeper)
    assert outcome.status == "ok" and outcome.summary["resumed_from_epoch"] == 0 and len(outcome.epochs) == 3
    assert [e["train_loss"] for e in outcome.epochs] == [e["train_loss"] for e in fresh.epochs]  # truly from the start
    err = capsys.readouterr().err
    assert "ignoring unreadable checkpoint" in err and why in err and "the trial starts from epoch 0" in err
