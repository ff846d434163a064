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


# A checkpoint's progress as every checkpoint written before TrainingState holds it (run_trial's `progress` dict).
OLD_PROGRESS = {
    "epochs": [
        {"epoch": 1, "train_loss": 1.5, "train_acc": 0.25, "val_loss": 1.25, "val_acc": 0.5, "lr": 0.01, "seconds": 2.0,
         "trainable_params": 70, "test_loss": 1.0, "test_acc": 0.75},
    ],
    "images_seen": 64,
    "train_seconds": 2.0,
    "lr": 0.001,
    "probe_scores": {"1e-05": 0.25, "0.001": 0.5},
}  # fmt: skip


def test_a_checkpoint_in_the_old_form_restores_into_the_training_state(tmp_path):
    torch.manual_seed(0)
    module = torch.nn.Linear(8, 2)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1, momentum=0.9)
    module(torch.randn(4, 8)).sum().backward()
    optimizer.step()  # momentum buffers to restore
    saved = {**checkpoint.capture(module, optimizer, torch.Generator().manual_seed(3), None), "progress": OLD_PROGRESS}
    torch.save(saved, tmp_path / "old.pt")
    loaded = checkpoint.read(tmp_path / "old.pt")  # weights_only, and checked
    assert loaded is not None

    fresh = torch.nn.Linear(8, 2)
    state = checkpoint.resume(loaded, fresh, torch.optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9), torch.Generator())
    assert isinstance(state, checkpoint.TrainingState)
    assert (state.lr, state.probe_scores, state.epochs, state.images_seen, state.train_seconds) == (
        0.001, {"1e-05": 0.25, "0.001": 0.5}, OLD_PROGRESS["epochs"], 64, 2.0
    )  # fmt: skip
    assert state.epochs_run == 1 and torch.equal(fresh.weight, module.weight)
    assert checkpoint.progress_of(state) == OLD_PROGRESS  # and saved again in the same form
    assert list(checkpoint.progress_of(state)) == list(OLD_PROGRESS)
    state.record({**OLD_PROGRESS["epochs"][0], "epoch": 2}, 1.0, 32)
    assert len(loaded["progress"]["epochs"]) == 1  # the state is a copy: training on does not change the checkpoint
    assert (state.epochs_run, state.images_seen, state.train_seconds) == (2, 96, 3.0)


def test_a_saved_training_state_is_the_old_forms_plain_dict():
    module = torch.nn.Linear(2, 2)
    saved = checkpoint.capture(module, torch.optim.SGD(module.parameters(), lr=0.1), torch.Generator(), checkpoint.state_of(OLD_PROGRESS))
    assert saved["progress"] == OLD_PROGRESS and list(saved["progress"]) == list(OLD_PROGRESS)
    assert checkpoint.problem(saved) is None
