"""`precision: auto` by measurement: the choice, its cache, and that measuring changes no result."""

from __future__ import annotations

import json
import os

import pytest
import torch
from helpers import changed, typed

from tlbench.trial import autotune
from tlbench.trial.autotune import Candidate
from tlbench.trial.train import run_trial

CPU = torch.device("cpu")
FP32, FP32_CL = Candidate("fp32", False), Candidate("fp32", True)
BF16, BF16_CL = Candidate("bf16", False), Candidate("bf16", True)


def test_the_fastest_candidate_wins_and_a_tie_goes_to_the_plain_way():
    assert autotune.fastest({FP32: 100.0, FP32_CL: 180.0, BF16: 90.0, BF16_CL: 120.0}) == FP32_CL
    assert autotune.fastest({FP32: 100.0, FP32_CL: 100.0, BF16: float("nan")}) == FP32
    with pytest.raises(ValueError):
        autotune.fastest({FP32: float("nan")})


def test_bf16_is_a_candidate_only_where_the_device_has_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    options, skipped = autotune.candidates(torch.device("cuda"))
    assert options == [FP32, FP32_CL] and "not supported" in skipped
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert autotune.candidates(torch.device("cuda")) == ([FP32, FP32_CL, BF16, BF16_CL], None)
    monkeypatch.setattr(autotune, "cpu_bf16_matmul_ratio", lambda threads: 2.1)  # AVX-512 BF16 / AMX
    assert autotune.candidates(CPU) == ([FP32, FP32_CL, BF16, BF16_CL], None)
    monkeypatch.setattr(autotune, "cpu_bf16_matmul_ratio", lambda threads: 0.05)  # emulated: a step can take 25 s
    options, skipped = autotune.candidates(CPU)
    assert options == [FP32, FP32_CL] and "emulated" in skipped and "0.05x" in skipped


def test_the_bf16_matmul_probe_is_a_rate_ratio(monkeypatch):
    ratio = autotune.cpu_bf16_matmul_ratio(torch.get_num_threads(), n=64)
    assert 0 < ratio < 100


class FakeClock:
    """Each candidate's step advances time by its own seconds; counts steps run."""

    def __init__(self, seconds: dict[Candidate, float]):
        self.now, self.seconds, self.steps = 0.0, seconds, dict.fromkeys(seconds, 0)

    def __call__(self) -> float:
        return self.now

    def make_step(self, candidate: Candidate):
        def step():
            self.now += self.seconds[candidate]
            self.steps[candidate] += 1

        return step


def test_measure_times_each_candidate_and_gives_up_early_on_a_hopeless_one():
    clock = FakeClock({FP32: 0.5, FP32_CL: 0.25, BF16: 4.0, BF16_CL: 0.3})
    rates = autotune.measure(clock.make_step, list(clock.seconds), batch=32, device=CPU, clock=clock)
    assert rates == pytest.approx({FP32: 64.0, FP32_CL: 128.0, BF16: 8.0, BF16_CL: 32 / 0.3})
    full = autotune.WARMUP_STEPS["cpu"] + autotune.TIMED_STEPS
    assert clock.steps[FP32] == clock.steps[FP32_CL] == clock.steps[BF16_CL] == full
    assert clock.steps[BF16] == autotune.WARMUP_STEPS["cpu"] + 1  # 16x slower than the best after one step: stop
    assert autotune.fastest(rates) == FP32_CL


def counting_measure(rates: dict[Candidate, float]):
    calls = []

    def measure(make_step, options, batch, device):
        calls.append(list(options))
        return {c: rates[c] for c in options}

    return measure, calls


IDENTITY = {"arch": "resnet18", "freeze": "none", "outputs": 10, "input": [3, 64, 64], "batch": 32, "device": "cpu (x86_64, 2 threads)"}


def test_a_decision_is_measured_once_then_read_back_by_its_key(tmp_path):
    cache = autotune.DecisionCache(tmp_path)
    measure, calls = counting_measure({FP32: 100.0, FP32_CL: 150.0, BF16: 40.0, BF16_CL: 60.0})
    first = autotune.decide(CPU, IDENTITY, cache, make_step=None, batch=32, measure=measure)
    assert (first.candidate, first.how) == (FP32_CL, "measured")
    assert first.row()["memory_format_used"] == "channels_last" and first.row()["precision_used"] == "fp32"
    again = autotune.decide(CPU, IDENTITY, cache, make_step=None, batch=32, measure=measure)
    assert (again.candidate, again.how, again.images_per_s) == (FP32_CL, "cached", first.images_per_s)
    assert len(calls) == 1
    saved = json.loads(cache.path(autotune.cache_key(IDENTITY)).read_text())  # plain JSON, not pickle
    assert saved["choice"] == "fp32+channels_last" and saved["identity"] == IDENTITY
    for change in ({"batch": 64}, {"input": [3, 128, 128]}, {"device": "NVIDIA H100"}, {"freeze": "head"}):
        autotune.decide(CPU, {**IDENTITY, **change}, cache, make_step=None, batch=32, measure=measure)
    assert len(calls) == 5  # another shape, device or what trains is measured afresh
    assert len(list(tmp_path.glob("*.json"))) == 5 and not list(tmp_path.glob("*.tmp"))


def test_where_a_feature_cache_is_built_the_choice_weighs_the_build_beside_the_steps(tmp_path):
    """Head-only, the steps of a Linear head cost little and the prefix's build most: the precision that builds
    fastest should win unless the steps outweigh it. A step alone would choose fp32 here."""
    steps = {FP32: 1000.0, FP32_CL: 1000.0, BF16: 800.0, BF16_CL: 800.0}
    builds = {FP32: 100.0, FP32_CL: 120.0, BF16: 200.0, BF16_CL: 300.0}
    measured = []

    def measure(make_step, options, batch, device, timed_steps=autotune.TIMED_STEPS):
        measured.append((make_step, batch, timed_steps))
        return dict(builds if make_step == "build" else steps)

    def decide(folder, images, trained_images):
        build = autotune.Build("build", 16, (3, 64, 64), images, trained_images)
        return autotune.decide(CPU, IDENTITY, autotune.DecisionCache(folder), "step", 32, measure=measure, build=build)

    # 1,000 images built, 1,000 trained: fp32 takes 1 + 10 s, bf16 + channels_last 1.25 + 3.3 s
    decision = decide(tmp_path / "a", 1000, 1000)
    assert decision.candidate == BF16_CL and decision.how == "measured"
    assert measured == [("step", 32, autotune.TIMED_STEPS), ("build", 16, autotune.BUILD_TIMING["timed_steps"])]
    assert decision.images_per_s["fp32+contiguous"] == 1000.0 and decision.images_per_s["build bf16+channels_last"] == 300.0
    # ten million images trained against a build of ten: the steps decide (fp32; its layouts tie, the build breaks it)
    assert decide(tmp_path / "b", 10, 10_000_000).candidate == FP32_CL
    # the weights are part of the key: the same shape with another build is measured, not read back
    saved = [json.loads(f.read_text())["identity"] for f in (tmp_path / "a").glob("*.json")]
    assert saved == [{**IDENTITY, "build_input": [3, 64, 64], "build_images": 1000, "trained_images": 1000}]
    assert autotune.Build("build", 16, (3, 64, 64), 1, 1).effective_rates({FP32: 10.0}, {}) == {
        FP32: 0.0
    }  # the build not timed: cannot win


def test_trials_that_measure_together_train_with_the_first_decision_kept(tmp_path):
    """Two trials of one shape start at once: both miss the cache and measure. The one that finishes second must
    train with the first one's decision, not its own: else two seeds of one config train in two precisions."""
    cache = autotune.DecisionCache(tmp_path)
    key = autotune.cache_key(IDENTITY)
    first_kept = autotune.Decision(BF16_CL, "measured", {"bf16+channels_last": 90.0})

    def measure_while_another_trial_keeps_its_decision(make_step, options, batch, device):
        assert cache.put(key, first_kept, IDENTITY, options) is first_kept  # the other trial, finishing first
        return {FP32: 100.0, FP32_CL: 150.0, BF16: 40.0, BF16_CL: 60.0}  # ours would pick fp32+channels_last

    ours = autotune.decide(CPU, IDENTITY, cache, make_step=None, batch=32, measure=measure_while_another_trial_keeps_its_decision)
    assert (ours.candidate, ours.how) == (BF16_CL, "cached")
    assert json.loads(cache.path(key).read_text())["choice"] == "bf16+channels_last"
    assert not list(tmp_path.glob("*.tmp"))


def test_a_decision_is_kept_on_a_file_system_without_hard_links(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(autotune.os, "link", no_links)
    cache = autotune.DecisionCache(tmp_path)
    measure, calls = counting_measure({FP32: 100.0, FP32_CL: 150.0, BF16: 40.0, BF16_CL: 60.0})
    first = autotune.decide(CPU, IDENTITY, cache, make_step=None, batch=32, measure=measure)
    again = autotune.decide(CPU, IDENTITY, cache, make_step=None, batch=32, measure=measure)
    assert (first.how, again.how, again.candidate, len(calls)) == ("measured", "cached", first.candidate, 1)
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("content", [
    "{not json", "[1, 2]", '{"key": "another", "choice": "fp32+contiguous"}', "KEY:fp16+contiguous",
    "KEY:bf16+channels_last", "\udcff", "x" * (autotune.MAX_FILE_BYTES + 1), "FIFO", "LINK",
])  # fmt: skip
def test_a_garbled_or_planted_decision_is_ignored_with_a_warning(tmp_path, monkeypatch, content):
    monkeypatch.setattr(autotune, "bf16_possible", lambda device: False)  # bf16 is not a candidate here
    cache = autotune.DecisionCache(tmp_path)
    key = autotune.cache_key(IDENTITY)
    path = cache.path(key)
    if content == "FIFO":
        os.mkfifo(path)  # reading it would hang a reader that does not check
    elif content == "LINK":  # a valid decision, planted elsewhere and linked in: a cache is never read through a link
        planted = tmp_path / "elsewhere.json"
        planted.write_text(json.dumps({"key": key, "choice": "fp32+contiguous"}))
        path.symlink_to(planted)
    elif content.startswith("KEY:"):
        path.write_text(json.dumps({"key": key, "choice": content[4:]}))
    else:
        path.write_bytes(content.encode("utf-8", "surrogateescape"))
    measure, calls = counting_measure({FP32: 100.0, FP32_CL: 150.0})
    with pytest.warns(UserWarning, match="ignoring the precision decision"):
        decision = autotune.decide(CPU, IDENTITY, cache, make_step=None, batch=32, measure=measure)
    assert (decision.candidate, decision.how) == (FP32_CL, "measured") and len(calls) == 1


def test_a_fixed_precision_stays_fixed_with_todays_memory_format():
    assert autotune.fixed("fp32", CPU).candidate == FP32 and autotune.fixed("bf16", CPU).candidate == BF16_CL
    assert autotune.fixed("fp32", torch.device("cuda")).candidate == FP32_CL
    assert autotune.fixed("fp32", CPU).how == "fixed"


@pytest.mark.slow
def test_auto_gives_the_results_of_its_decision_run_fixed(tmp_path):
    """Measuring trains copies with dropout (the global RNG) and BatchNorm: the trial must not see any of it."""
    config = typed(
        precision="auto",
        image_size=16,
        model={"hidden": [16], "dropout": 0.5},
        dataset={"n_train": 96, "n_test": 48},
        train={"batch_size": 16},
    )
    auto = run_trial(config, tmp_path / "a")
    timed = auto.summary["autotune_images_per_s"]
    assert auto.summary["auto_choice"] == "measured" and len(timed) == (2 if auto.summary["autotune_skipped"] else 4)
    chosen = Candidate.parse(f"{auto.summary['precision_used']}+{auto.summary['memory_format_used']}")
    fixed = run_trial(changed(config, precision=chosen.precision), tmp_path / "f", memory_format=chosen.memory_format)
    assert fixed.summary["auto_choice"] == "fixed" and fixed.summary["autotune_images_per_s"] is None
    assert fixed.epochs[0]["train_loss"] == auto.epochs[0]["train_loss"]
    for key in ("test_acc", "test_loss", "train_acc", "confusion"):
        assert fixed.summary[key] == auto.summary[key], key
    cached = run_trial(config, tmp_path / "a")
    assert cached.summary["auto_choice"] == "cached" and cached.summary["autotune_s"] == 0.0
    assert cached.summary["test_loss"] == auto.summary["test_loss"]


def test_auto_measures_the_part_after_the_feature_cache(tmp_path):
    config = typed(precision="auto", image_size=16, dataset={"n_train": 64, "n_test": 32}, train={"freeze": "head"})
    outcome = run_trial(config, tmp_path)
    assert outcome.summary["feature_cache"].startswith("built") and outcome.summary["auto_choice"] == "measured"
    (decision,) = (tmp_path / ".tlbench-cache" / "autotune").glob("*.json")
    saved = json.loads(decision.read_text())
    assert saved["identity"]["input"] == [64]  # small_cnn's features before its head
    # ... with the build weighed in: its pools (train with val, 64; test, 32) once each, beside its epochs' steps
    trained = outcome.summary["epochs_run"] * outcome.summary["n_train"]
    assert (saved["identity"]["build_images"], saved["identity"]["trained_images"]) == (96, trained)
    assert saved["identity"]["build_input"] == [3, 16, 16]  # the cut's shape is the same at every image size
    assert {f"build {name}" for name in saved["images_per_s"] if not name.startswith("build")} <= set(saved["images_per_s"])


def test_auto_with_a_feature_cache_gives_the_results_of_its_decision_run_fixed(tmp_path, monkeypatch):
    """The cache is built in the decided precision and layout: the decision run fixed finds the very features auto
    built (a hit), so it gives the same numbers. (The build once ran channels_last under auto whatever the
    decision's layout: a fixed contiguous run then missed, and built features of its own.)"""
    config = typed(precision="auto", image_size=16, dataset={"n_train": 64, "n_test": 32}, train={"freeze": "head"})
    for chosen in (FP32, FP32_CL):
        root = tmp_path / chosen.name
        monkeypatch.setattr(autotune, "fastest", lambda rates, chosen=chosen: chosen)
        auto = run_trial(config, root)
        assert (auto.summary["precision_used"], auto.summary["memory_format_used"]) == (chosen.precision, chosen.memory_format)
        fixed = run_trial(changed(config, precision=chosen.precision), root, memory_format=chosen.memory_format)
        assert auto.summary["feature_cache"].startswith("built") and fixed.summary["feature_cache"].startswith("hit"), chosen
        for key in ("test_acc", "test_loss", "train_loss", "confusion"):
            assert fixed.summary[key] == auto.summary[key], key
