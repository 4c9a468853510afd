"""The ``compile`` option: compiled networks compute what eager ones do, a failed compilation
falls back to eager execution with one warning, and the option reaches every caller."""

import logging

import numpy as np
import pytest
import torch
from config_builder import cpu_config

from l2s_core import compiling
from l2s_core.compiling import compile_network, compile_wanted, is_compiled
from l2s_core.distributed import ProcessContext
from l2s_core.infer import predict_volume
from l2s_core.losses import DiceCELoss
from l2s_core.model import UNet3D
from l2s_core.train.loop import train_step
from l2s_core.train.segmenter import run_segmenter

CPU = ProcessContext(rank=0, world_size=1, device=torch.device("cpu"), distributed=False)


class RecordingCompile:
    """Stands in for ``torch.compile``: records what it compiled and runs it unchanged."""

    def __init__(self) -> None:
        self.compiled: list[object] = []

    def __call__(self, function, **kwargs):
        self.compiled.append(getattr(function, "__self__", function))
        return function


@pytest.fixture
def recording(monkeypatch) -> RecordingCompile:
    fake = RecordingCompile()
    monkeypatch.setattr(compiling.torch, "compile", fake)
    return fake


def _step_and_weights(model: torch.nn.Module, images, labels) -> tuple[float, torch.Tensor]:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    _, loss, _ = train_step(model, images, labels, optimizer, DiceCELoss(), CPU, amp=False)
    return float(loss), torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.slow
def test_compiled_and_eager_steps_give_the_same_loss_and_weights():
    torch.manual_seed(0)
    eager = UNet3D(base_channels=2, depth=1)
    compiled = UNet3D(base_channels=2, depth=1)
    compiled.load_state_dict(eager.state_dict())
    compile_network(compiled)
    images = torch.randn(2, 1, 4, 8, 8)
    labels = (torch.rand(2, 4, 8, 8) < 0.3).to(torch.uint8)
    eager_loss, eager_weights = _step_and_weights(eager, images, labels)
    compiled_loss, compiled_weights = _step_and_weights(compiled, images, labels)
    assert is_compiled(compiled)
    assert compiled_loss == pytest.approx(eager_loss, rel=1e-2)  # bfloat16 tolerance; fused kernels reorder sums
    assert torch.allclose(compiled_weights, eager_weights, rtol=1e-2, atol=1e-3)
    assert set(compiled.state_dict()) == set(eager.state_dict())  # checkpoints keep their keys


def test_a_failed_compilation_warns_once_and_runs_eagerly(monkeypatch, caplog):
    def broken(function, **kwargs):
        def call(*args, **kw):
            raise RuntimeError("no C++ compiler\nmore detail")

        return call

    monkeypatch.setattr(compiling.torch, "compile", broken)
    torch.manual_seed(0)
    model = torch.nn.Conv3d(1, 2, 3, padding=1)
    images = torch.randn(1, 1, 4, 4, 4)
    expected = model._call_impl(images)
    compile_network(model)
    with caplog.at_level(logging.WARNING, logger="l2s_core.compiling"):
        assert torch.equal(model(images), expected)
        assert torch.equal(model(images), expected)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "no C++ compiler" in warnings[0] and "more detail" not in warnings[0]
    assert not is_compiled(model)
    compile_network(model)  # a failed network is not compiled again
    assert not is_compiled(model)


def test_an_input_error_is_raised_as_itself(monkeypatch):
    monkeypatch.setattr(compiling.torch, "compile", lambda function, **kwargs: function)
    model = compile_network(UNet3D(base_channels=2, depth=2))
    with pytest.raises(ValueError, match="multiples of 4"):
        model(torch.zeros(1, 1, 5, 8, 8))


def test_default_compiles_on_gpus_only():
    assert compile_wanted(None, "cuda:0") and not compile_wanted(None, "cpu")
    assert compile_wanted(True, "cpu") and not compile_wanted(False, "cuda")


def test_the_option_reaches_prediction_through_the_runs_config(recording, tmp_path):
    model = torch.nn.Conv3d(1, 2, 1)
    image = np.random.default_rng(0).normal(size=(4, 6, 6)).astype(np.float32)
    off = run_segmenter(model, cpu_config(tmp_path, tmp_path, compile=False))
    predict_volume(off, image)
    assert recording.compiled == []
    on = run_segmenter(model, cpu_config(tmp_path, tmp_path, compile=True))
    assert on.compile is True
    first = predict_volume(on, image)
    assert recording.compiled == [model] and is_compiled(model)
    assert np.array_equal(predict_volume(on, image), first) and len(recording.compiled) == 1  # compiled once


def test_the_option_reaches_the_training_step_and_validation(recording, prepared_task, tmp_path):
    from l2s_core.train.launch import train_run

    task = prepared_task(n_cases=5, shape=(16, 32, 32), organ=(3, 6, 8, 11, 18, 20), noise=0.3)
    config = cpu_config(task.folder, tmp_path / "run", samples_per_epoch=2, max_epochs=1, compile=True)
    summary = train_run(config, progress=False)
    assert summary.epochs == 1
    assert len(recording.compiled) == 1 and isinstance(recording.compiled[0], UNet3D)
    assert summary.config.compile is True
