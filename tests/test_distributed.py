"""Data parallelism: devices, process contexts, free ports and errors of DataLoader workers."""

from __future__ import annotations

import socket

import pytest
import torch

from l2s_core import distributed
from l2s_core.errors import ConfigError, InputDataError


def test_devices_and_backends() -> None:
    assert distributed.resolve_device("cpu") == torch.device("cpu")
    assert distributed.backend_for(torch.device("cpu")) == "gloo"
    assert distributed.backend_for(torch.device("cuda", 1)) == "nccl"
    if not torch.cuda.is_available():
        assert distributed.resolve_device("auto") == torch.device("cpu")
        assert distributed.default_world_size("auto") == 1
        with pytest.raises(ConfigError, match="device: 'cuda' requested but CUDA is not available"):
            distributed.resolve_device("cuda")
    with pytest.raises(ConfigError, match="device: must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'tpu'"):
        distributed.resolve_device("tpu")


def test_single_process_context_needs_no_process_group() -> None:
    context = distributed.single_process("cpu")
    assert (context.rank, context.world_size, context.is_main, context.distributed) == (0, 1, True, False)
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap(model, context) is model and distributed.unwrap(model) is model
    values = torch.tensor([1.0, 2.0])
    assert torch.equal(distributed.all_reduce(values, context), torch.tensor([1.0, 2.0]))


def test_free_port_can_be_bound() -> None:
    port = distributed.free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", port))


class _FailsAtThree(torch.utils.data.Dataset):
    """Items 0..5 as tensors; item 3 raises the error of a damaged cache file."""

    def __len__(self) -> int:
        return 6

    def __getitem__(self, index: int) -> torch.Tensor:
        if index == 3:
            raise InputDataError("cases/c3/full_image.npy", "corrupt cache file")
        return torch.tensor([index])


def test_error_in_a_data_loader_worker_reaches_the_loop_as_itself() -> None:
    loader = distributed.ErrorPassingDataLoader(_FailsAtThree(), collate_fn=torch.stack, batch_size=2, num_workers=2)
    batches = []
    with pytest.raises(InputDataError) as raised:
        for batch in loader:
            batches.append(batch.flatten().tolist())
    assert str(raised.value) == "cases/c3/full_image.npy: corrupt cache file"
    assert batches == [[0, 1]]
