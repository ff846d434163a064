"""The typed trial config: the same keys as schema.py, types that agree with its kinds, and an exact round trip."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from helpers import resolved

from tlbench.grid import Grid, schema
from tlbench.trial.config import Imbalance, TrialConfig, TrialConfigError

ROOT = Path(__file__).resolve().parents[2]

# What each schema kind is once frozen (lists as tuples, a freeze mapping read-only).
FROZEN_TYPE: dict[str, Any] = {
    "int": int, "float": float, "bool": bool, "str": str,
    "list[int]": tuple[int, ...], "list[float]": tuple[float, ...], "list[str]": tuple[str, ...],
    "freeze": str | Mapping[str, Any], "imbalance": Imbalance, "counts": Mapping[str, int],
}  # fmt: skip


def typed_fields(cls: type, prefix: str = "") -> dict[str, Any]:
    """Every leaf of the dataclass tree as a dotted name -> its resolved annotation (sections recursed into)."""
    out: dict[str, Any] = {}
    for name, hint in typing.get_type_hints(cls).items():
        if dataclasses.is_dataclass(hint) and hint is not Imbalance:
            out.update(typed_fields(hint, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = hint
    return out


def test_the_dataclass_tree_has_exactly_the_schema_keys_plus_the_seed():
    assert set(typed_fields(TrialConfig)) == set(schema.FIELDS) | {"seed"}


@pytest.mark.parametrize("key", sorted(schema.FIELDS))
def test_each_field_type_agrees_with_its_schema_kind(key):
    field = schema.FIELDS[key]
    expected = FROZEN_TYPE[field.kind] | None if field.nullable else FROZEN_TYPE[field.kind]
    assert typed_fields(TrialConfig)[key] == expected, f"{key}: schema kind {field.kind}, nullable={field.nullable}"


@pytest.mark.parametrize("profile", ["full", "smoke"])
def test_every_trial_of_the_reports_grid_round_trips(profile):
    trials = Grid.load(ROOT / "grid" / "reports.yaml").expand(profile=profile)
    assert trials
    for trial in trials:
        assert TrialConfig.from_dict(trial.config).to_dict() == trial.config, trial.experiment


def test_values_are_deep_frozen():
    config = resolved(
        dataset={"imbalance": {"minority": "class0", "keep": 0.5}, "priors": [0.25] * 4},
        train={"freeze": {"gradual": {"every": 2, "blocks": ["b", "a"]}}},
    )
    typed = TrialConfig.from_dict(config)
    assert typed.dataset.imbalance == Imbalance("class0", 0.5)
    assert typed.dataset.priors == (0.25,) * 4
    assert typed.train.freeze["gradual"]["blocks"] == ("b", "a")
    with pytest.raises(TypeError):
        typed.train.freeze["gradual"]["every"] = 3  # read-only all the way down
    with pytest.raises(dataclasses.FrozenInstanceError):
        typed.train.lr = 1.0  # type: ignore[misc]
    config["train"]["freeze"]["gradual"]["blocks"].append("c")  # the typed config shares nothing with the dict
    assert typed.train.freeze["gradual"]["blocks"] == ("b", "a")
    assert typed.to_dict()["train"]["freeze"] == {"gradual": {"every": 2, "blocks": ["b", "a"]}}  # no 'first' made up


def test_an_unknown_key_is_named_with_its_dotted_path():
    config = resolved()
    config["train"]["lrr"] = config["train"].pop("lr")
    with pytest.raises(TrialConfigError, match=r"unknown key train\.lrr \(did you mean train\.lr\?\)"):
        TrialConfig.from_dict(config)


def test_a_missing_key_is_named_with_its_dotted_path():
    config = resolved()
    del config["dataset"]["limit"]
    with pytest.raises(TrialConfigError, match=r"missing key dataset\.limit"):
        TrialConfig.from_dict(config)
    del config["seed"]
    with pytest.raises(TrialConfigError, match=r"missing key seed"):
        TrialConfig.from_dict(config)


def test_an_unknown_key_of_a_nested_mapping_is_named():
    config = resolved(dataset={"imbalance": {"minority": "class0", "keep": 0.5}})
    config["dataset"]["imbalance"]["share"] = config["dataset"]["imbalance"].pop("keep")
    with pytest.raises(TrialConfigError, match=r"unknown key dataset\.imbalance\.share"):
        TrialConfig.from_dict(config)


def test_a_section_that_is_not_a_mapping_is_refused():
    with pytest.raises(TrialConfigError, match="model should be a mapping"):
        TrialConfig.from_dict({**resolved(), "model": None})


def test_a_worker_given_a_config_with_a_mistyped_key_records_an_error_row_naming_it():
    from tlbench.grid import TrialSpec
    from tlbench.trial.execute import execute

    config = resolved()
    config["train"]["batchsize"] = 64  # beside the real key: a row can still be written for it (store.flatten_config)
    row, epochs = execute(TrialSpec("abc", "e", "r.txt", 0, {}, config, ("e",)), "unused", {"profile": "test"})
    assert row["status"] == "error" and epochs == []
    assert "unknown key train.batchsize (did you mean train.batch_size?)" in row["error"]
