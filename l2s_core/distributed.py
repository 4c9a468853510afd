"""Data-parallel processes for training: one process, ``torchrun`` or spawned workers.

The trainer runs the same code in every case; it receives a :class:`ProcessContext` telling
it its rank, the number of processes and its device. With more than one process the model is
wrapped in ``DistributedDataParallel`` (NCCL on GPUs, gloo on the CPU), each process takes
its share of the global batch, and gradients are averaged across processes.

Two ways to start several processes:

* ``torchrun --nproc-per-node 2 -m l2s_core.train CONFIG.json``: each process reads ``RANK``,
  ``WORLD_SIZE`` and ``LOCAL_RANK`` from the environment (:func:`context_from_env`).
* from Python or a notebook: :func:`spawn` starts ``world_size`` processes with
  ``torch.multiprocessing`` (start method ``spawn``) that meet on a free localhost port.

Either way every process dies with the process that started it
(:func:`l2s_core.processes.die_with_parent`), and an :class:`~l2s_core.errors.L2SError` of a
spawned process is raised again, as itself, in the process that spawned them; under
``torchrun`` each process reports its own. Errors in DataLoader worker processes reach the
training loop as themselves through :class:`ErrorPassingDataLoader`.
"""

from __future__ import annotations

__all__ = [
    "COLLECTIVE_TIMEOUT",
    "ErrorPassingDataLoader",
    "FAILURE_GRACE_SECONDS",
    "ProcessContext",
    "all_reduce",
    "backend_for",
    "barrier",
    "context_from_env",
    "default_world_size",
    "free_port",
    "join_process_group",
    "launched_by_torchrun",
    "leave_process_group",
    "resolve_device",
    "single_process",
    "spawn",
    "unwrap",
    "wrap",
]

import contextlib
import logging
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.multiprocessing.spawn import ProcessException
from torch.utils.data import DataLoader, Dataset

from l2s_core import processes
from l2s_core.errors import ConfigError, L2SError

#: How long a process waits for the others at a collective operation (each validates its share
#: of the validation cases, whose sizes differ, before the counts are summed).
COLLECTIVE_TIMEOUT = timedelta(hours=2)
#: After one spawned process failed, how long the others have to end by themselves before they
#: are terminated (without it, terminating at once made the resource tracker report leaked
#: semaphores of their DataLoader workers; a rank waiting in a collective does not end by itself).
FAILURE_GRACE_SECONDS = 3.0


@dataclass(frozen=True)
class ProcessContext:
    """Where one training process stands among the data-parallel processes.

    Attributes:
        rank: index of this process, 0 to ``world_size - 1``; rank 0 writes the files.
        world_size: number of processes.
        device: the device this process computes on.
        distributed: whether a ``torch.distributed`` process group is in use (also with one
            process, e.g. the GPU check's one-process NCCL run).
    """

    rank: int
    world_size: int
    device: torch.device
    distributed: bool

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and validates (rank 0)."""
        return self.rank == 0


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """The device of a process from a configuration's ``device`` setting.

    Args:
        name: ``"auto"`` (a GPU when CUDA is available, else the CPU), ``"cpu"``, ``"cuda"``
            or ``"cuda:N"``.
        local_rank: index of the process on its machine; with ``"auto"`` or ``"cuda"`` it
            selects the GPU.

    Returns:
        The device.

    Raises:
        ConfigError: an unknown name, or a GPU requested where CUDA is not available.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError("device", f"{name!r} requested but CUDA is not available; use 'cpu' or 'auto'")
        return torch.device("cuda", local_rank) if name == "cuda" else torch.device(name)
    raise ConfigError("device", f"must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}")


def default_world_size(device_name: str) -> int:
    """Processes to use by default: one per GPU, at most two (the paper's two GPUs); one on the CPU."""
    device = resolve_device(device_name)
    return min(2, torch.cuda.device_count()) if device.type == "cuda" else 1


def backend_for(device: torch.device) -> str:
    """The process-group backend for a device: NCCL for GPUs, gloo for the CPU."""
    return "nccl" if device.type == "cuda" else "gloo"


def single_process(device_name: str) -> ProcessContext:
    """The context of a run in this process alone, without a process group."""
    return ProcessContext(rank=0, world_size=1, device=resolve_device(device_name), distributed=False)


def launched_by_torchrun() -> bool:
    """Whether this process was started by ``torchrun`` (``RANK`` and ``WORLD_SIZE`` are set)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def join_process_group(
    device_name: str, rank: int, world_size: int, local_rank: int, init_method: str = "env://"
) -> ProcessContext:
    """Join the process group of the data-parallel processes.

    Args:
        device_name: the configuration's ``device`` (see :func:`resolve_device`).
        rank: global rank of this process.
        world_size: number of processes.
        local_rank: rank on this machine (selects the GPU).
        init_method: ``"env://"`` under ``torchrun``, ``"tcp://127.0.0.1:PORT"`` when spawned.

    Returns:
        The context of this process.
    """
    device = resolve_device(device_name, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        backend_for(device),
        init_method=init_method,
        rank=rank,
        world_size=world_size,
        timeout=COLLECTIVE_TIMEOUT,
        device_id=device if device.type == "cuda" else None,
    )
    return ProcessContext(rank=rank, world_size=world_size, device=device, distributed=True)


def context_from_env(device_name: str) -> ProcessContext:
    """Join the process group of a ``torchrun`` launch (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``);
    this process dies with its ``torchrun``."""
    processes.die_with_parent(os.getppid())
    return join_process_group(
        device_name, int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", "0"))
    )


def leave_process_group(context: ProcessContext) -> None:
    """Destroy the process group that :func:`join_process_group` created, if any."""
    if context.distributed and dist.is_initialized():
        dist.destroy_process_group()


def free_port() -> int:
    """A TCP port on localhost that is free now (for the spawned processes to meet on)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _spawned_entry(
    rank: int, worker: Callable[..., Any], world_size: int, port: int, parent: int, errors: Any, args: tuple
) -> None:
    processes.die_with_parent(
        parent
    )  # SIGKILL, replacing the SIGINT torch asks for, which a blocked collective ignores
    try:
        worker(rank, world_size, f"tcp://127.0.0.1:{port}", *args)
    except L2SError as exc:
        errors.put(exc)
        raise


@contextlib.contextmanager
def _quiet_spawn_log() -> Iterator[None]:
    """Without torch's warning that it terminates the other processes after one failed (the
    failure itself is raised)."""
    logger = logging.getLogger("torch.multiprocessing.spawn")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def spawn(worker: Callable[..., Any], world_size: int, *args: Any) -> None:
    """Run ``worker(rank, world_size, init_method, *args)`` in ``world_size`` new processes.

    The worker must be a module-level function (it is pickled by name) and should call
    :func:`join_process_group` with the given ``init_method``. Returns when every process
    has finished; the processes die with this one.

    Raises:
        L2SError: a worker raised it (when the first failure was another worker losing its
            peer, the l2s error is still the one raised).
        torch.multiprocessing.ProcessException: a worker raised another exception or died.
    """
    errors = mp.get_context("spawn").SimpleQueue()
    try:
        with _quiet_spawn_log():
            started = mp.start_processes(
                _spawned_entry,
                args=(worker, world_size, free_port(), os.getpid(), errors, args),
                nprocs=world_size,
                join=False,
                start_method="spawn",
            )
            while not started.join(grace_period=FAILURE_GRACE_SECONDS):
                pass
    except ProcessException:
        if errors.empty():
            raise
        raise errors.get() from None


class _ErrorsAsItems(Dataset):
    """A dataset whose items are the error instead when reading them raises an l2s or OS error."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        try:
            return self.dataset[index]
        except (L2SError, OSError) as exc:
            return exc


class _CollateOrError:
    """``collate(items)``, or the first error among the items (a class, so that it pickles)."""

    def __init__(self, collate: Callable[[list[Any]], Any]) -> None:
        self.collate = collate

    def __call__(self, items: list[Any]) -> Any:
        errors = [item for item in items if isinstance(item, Exception)]
        return errors[0] if errors else self.collate(items)


class ErrorPassingDataLoader(DataLoader):
    """A ``DataLoader`` whose worker processes pass an :class:`L2SError` or ``OSError`` on as itself.

    torch raises a worker's error again as a ``RuntimeError`` holding its traceback text (it
    cannot rebuild an ``L2SError`` from that). Here a worker returns the error as the batch,
    and iterating raises it, so the user sees the one-line message.

    Args:
        dataset: the dataset (its ``set_epoch`` etc. stay on this object).
        collate_fn: how items become a batch.
        **kwargs: the other ``DataLoader`` arguments.
    """

    def __init__(self, dataset: Dataset, collate_fn: Callable[[list[Any]], Any], **kwargs: Any) -> None:
        super().__init__(_ErrorsAsItems(dataset), collate_fn=_CollateOrError(collate_fn), **kwargs)

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        for batch in super().__iter__():
            if isinstance(batch, Exception):
                raise batch
            yield batch


def unwrap(model: nn.Module) -> nn.Module:
    """The network inside a ``DistributedDataParallel`` wrapper, or ``model`` itself."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def wrap(model: nn.Module, context: ProcessContext) -> nn.Module:
    """``model`` wrapped in ``DistributedDataParallel`` when a process group is in use."""
    if not context.distributed:
        return model
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def all_reduce(
    values: torch.Tensor, context: ProcessContext, op: dist.ReduceOp.RedOpType = dist.ReduceOp.SUM
) -> torch.Tensor:
    """Reduce a tensor over the processes (in place; unchanged with one process) and return it."""
    if context.distributed:
        dist.all_reduce(values, op=op)
    return values


def barrier(context: ProcessContext) -> None:
    """Wait until every process reaches this point (no-op with one process)."""
    if context.distributed:
        dist.barrier()
