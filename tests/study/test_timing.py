"""Measured study time (``l2s_core.study.timing``): one training step and one validation pass
measured on the CPU after untimed warm-ups, and the measurement scaled to an epoch (steps of the
global batch, voxels of the padded inputs, validation shared by the processes) and to the runs.
No test depends on how fast this machine is."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from config_builder import cpu_config

import l2s_core.train.loop as loop
from l2s_core.study import timing as timing_module
from l2s_core.study.timing import StepTiming, measure_network, network_timing


def test_measure_network_times_a_step_and_a_pass_on_the_cpu(tmp_path: Path) -> None:
    config = cpu_config(tmp_path, tmp_path)
    measured = measure_network(config, (16, 16, 16), 2, (16, 32, 32))
    assert measured.step_seconds > 0 and measured.validation_seconds > 0
    assert measured.train_input == (16, 16, 16) and measured.validation_shape == (16, 32, 32)


def test_warm_up_calls_are_not_timed_and_the_step_is_the_median_of_the_timed_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clock that each (real) call advances by a scripted time: warm-ups 100 s, then training
    steps of 1, 7 and 2 s (median 2) and a validation pass of 0.5 s."""
    clock = [0.0]
    step_times = iter([100.0, 100.0, 1.0, 7.0, 2.0])
    pass_times = iter([100.0, 100.0, 0.5])

    def advancing(function, times):
        def call(*args, **kwargs):
            result = function(*args, **kwargs)
            clock[0] += next(times)
            return result

        return call

    monkeypatch.setattr(timing_module, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    monkeypatch.setattr(loop, "train_step", advancing(loop.train_step, step_times))
    monkeypatch.setattr(timing_module, "predict_mask", advancing(timing_module.predict_mask, pass_times))
    measured = measure_network(cpu_config(tmp_path, tmp_path), (16, 16, 16), 2, (16, 16, 16))
    assert (measured.step_seconds, measured.validation_seconds) == (2.0, 0.5)
    assert next(step_times, None) is None and next(pass_times, None) is None  # every scripted call made


def test_an_epoch_is_the_measured_step_and_pass_scaled_by_steps_and_voxels(tmp_path):
    config = cpu_config(tmp_path, tmp_path, samples_per_epoch=9, batch_size=2, depth=2, patch_size=(16, 16, 16))
    measured = StepTiming(0.5, 2.0, (16, 16, 16), (16, 32, 32))
    timing = network_timing(
        "spleen", "baseline", config, measured, (8, 16, 16), 99, [(16, 32, 32), (16, 16, 16)], 10, 3
    )
    assert timing.steps_per_epoch == 5  # ceil(9 / 2)
    assert timing.train_seconds == 5 * 0.5 / 2  # half the patch's voxels
    assert timing.validation_seconds == 2.0 * 1.25  # the measured volume and one of a quarter of its voxels
    assert timing.total_seconds == 3 * 10 * (timing.train_seconds + timing.validation_seconds)


def test_padded_inputs_a_patch_per_case_and_validation_shared_by_the_processes(tmp_path: Path) -> None:
    """By hand: depth 2 pads sides to multiples of 4; 10 training cases (no samples_per_epoch) at
    a global batch of 4 are 3 steps; the input 9x16x16 pads to 12x16x16, 3/4 of the measured
    16x16x16; the validation volumes 16x32x32 and 5x30x30 (padded 8x32x32) are 1.5 measured
    volumes, split between 2 processes; 4 epochs a run, 5 runs."""
    config = cpu_config(tmp_path, tmp_path, batch_size=4, depth=2, world_size=2)
    assert config.samples_per_epoch is None
    measured = StepTiming(0.8, 3.0, (16, 16, 16), (16, 32, 32))
    result = network_timing("liver", "localiser", config, measured, (9, 16, 16), 10, [(16, 32, 32), (5, 30, 30)], 4, 5)
    assert (result.organ, result.network, result.measured, result.epochs_per_run, result.runs) == (
        "liver",
        "localiser",
        measured,
        4,
        5,
    )
    assert result.steps_per_epoch == 3
    assert result.train_seconds == pytest.approx(3 * 0.8 * 0.75)  # 1.8
    assert result.validation_seconds == pytest.approx(1.5 * 3.0 / 2)  # 2.25
    assert result.epoch_seconds == pytest.approx(1.8 + 2.25)
    assert result.run_seconds == pytest.approx(4 * 4.05)
    assert result.total_seconds == pytest.approx(5 * 4 * 4.05)  # 81 s
