"""Checkpoints of trained networks and resume states of training runs.

Both kinds of file hold only tensors, dicts, lists, tuples, numbers, strings and ``None``, so
that they load with ``torch.load(weights_only=True)``: opening a checkpoint never runs code
stored in it. Both are written to a temporary file in the destination folder and renamed
into place, so an interrupted write leaves the previous file intact.

A checkpoint (``best.pt``) is ``{"state_dict": ..., "metadata": {...}}`` where the metadata is
plain JSON: a :class:`CheckpointMetadata` (the network's class and constructor arguments
``hparams``, the run's network type, epoch, validation Dice and seed) with ``format_version``.
:func:`load_model` rebuilds the network from ``hparams`` and refuses a checkpoint whose
architecture differs from what the caller expects.

A resume state (``resume.pt``) is what a training run needs to continue after an
interruption: model and optimizer state, the number of completed epochs, the best result so
far, the epochs since the last improvement, the per-epoch log rows and the random generator
states of torch, numpy and Python.
"""

from __future__ import annotations

__all__ = [
    "CheckpointMetadata",
    "ResumeState",
    "capture_rng_states",
    "load_model",
    "load_resume_state",
    "read_checkpoint_metadata",
    "restore_rng_states",
    "save_checkpoint",
    "save_resume_state",
]

import json
import pickle
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from l2s_core.distributed import unwrap
from l2s_core.errors import CheckpointError
from l2s_core.files import FORMAT_VERSION, atomic_open, check_format_version
from l2s_core.model import NETWORK_CLASSES
from l2s_core.records import Checker, plain


@dataclass(frozen=True)
class CheckpointMetadata:
    """What a checkpoint records of its weights.

    Attributes:
        network_class: the class that rebuilds the network (a name of
            :data:`~l2s_core.model.NETWORK_CLASSES`).
        hparams: the network's constructor arguments.
        network: the run's network type (``baseline``, ``localiser``, ``organ``), where a
            training run wrote the checkpoint.
        epoch: the epoch of these weights.
        val_dice: their validation Dice.
        seed: the run's seed.
    """

    network_class: str
    hparams: dict[str, Any]
    network: str | None = None
    epoch: int | None = None
    val_dice: float | None = None
    seed: int | None = None


def _plain_json(path: Path, name: str, value: dict[str, Any]) -> dict[str, Any]:
    """``value`` after a JSON round trip (tuples become lists), or CheckpointError if it is not JSON."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(path, f"{name} must be plain JSON data ({exc})") from None


def _save(path: Path, payload: dict[str, Any]) -> None:
    with atomic_open(path) as handle:
        torch.save(payload, handle)


def _load(path: Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` to the CPU, with every failure turned into a CheckpointError."""
    if not path.is_file():
        raise CheckpointError(path, "file not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's own text advises weights_only=False, which l2s never does
        raise CheckpointError(
            path,
            "cannot be read as plain data: the file is damaged or holds objects other than "
            "tensors and plain values (e.g. a whole pickled model), which l2s never unpickles "
            "because that could run code",
        ) from None
    except Exception as exc:  # torch raises many types for damaged files (zip, EOF)
        raise CheckpointError(
            path, f"cannot be read, the file is corrupt or truncated ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(payload, dict):
        raise CheckpointError(path, f"expected a dict, found {type(payload).__name__}")
    return payload


def _check_format(path: Path, content: Any) -> dict[str, Any]:
    """``content`` if it is a dict written by l2s in this format version."""
    if not isinstance(content, dict):
        raise CheckpointError(path, "no metadata dict; not a file written by l2s")
    check_format_version(path, content.get("format_version"))
    return content


def _checkpoint_metadata(path: Path, metadata: Any) -> CheckpointMetadata:
    """A checkpoint's ``metadata`` as a :class:`CheckpointMetadata`, if it is l2s metadata of this
    format version that names a known network class with its constructor arguments."""
    fields = {k: v for k, v in _check_format(path, metadata).items() if k != "format_version"}
    if not isinstance(fields.get("hparams"), dict) or fields.get("network_class") not in NETWORK_CLASSES:
        raise CheckpointError(
            path, "not an l2s network checkpoint (needs state_dict, hparams and a known network_class)"
        )
    return Checker(str(path), CheckpointError).dataclass(fields, CheckpointMetadata, "metadata")  # type: ignore[no-any-return]


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    network: str | None = None,
    epoch: int | None = None,
    val_dice: float | None = None,
    seed: int | None = None,
) -> None:
    """Save a network's weights with their :class:`CheckpointMetadata`, atomically.

    Args:
        path: destination file (usually ``<run_dir>/best.pt``).
        model: a network with an ``hparams`` dict of constructor arguments (e.g.
            :class:`~l2s_core.model.UNet3D`), possibly wrapped in ``DistributedDataParallel``.
        network: the run's network type.
        epoch: the epoch of these weights.
        val_dice: their validation Dice.
        seed: the run's seed.

    Raises:
        CheckpointError: a value that is not plain JSON data.
    """
    path = Path(path)
    unwrapped = unwrap(model)
    metadata = CheckpointMetadata(
        type(unwrapped).__name__,
        dict(unwrapped.hparams),  # type: ignore[arg-type]  # an l2s network's constructor arguments
        network,
        epoch,
        val_dice,
        seed,
    )
    full_metadata = _plain_json(path, "metadata", {**plain(metadata), "format_version": FORMAT_VERSION})
    state_dict = {k: v.detach().cpu() for k, v in unwrapped.state_dict().items()}
    _save(path, {"state_dict": state_dict, "metadata": full_metadata})


def read_checkpoint_metadata(path: str | Path) -> CheckpointMetadata:
    """The metadata of a checkpoint written by :func:`save_checkpoint`.

    Raises:
        CheckpointError: missing, corrupt or not an l2s checkpoint.
        FormatVersionError: written by an incompatible l2s version.
    """
    path = Path(path)
    return _checkpoint_metadata(path, _load(path).get("metadata"))


def _listed(title: str, items: list[str], shown: int = 3) -> str:
    """``title`` and the first ``shown`` items, with a count of the rest; empty if no items."""
    if not items:
        return ""
    rest = f" and {len(items) - shown} more" if len(items) > shown else ""
    return f"{title} {', '.join(items[:shown])}{rest}"


def _architecture_differences(path: Path, network: nn.Module, state_dict: dict[str, Any]) -> list[str]:
    """Human-readable differences between a network's parameters and a saved state dict."""
    expected = {k: tuple(v.shape) for k, v in network.state_dict().items()}
    if not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise CheckpointError(path, "state_dict holds values that are not tensors")
    saved = {k: tuple(v.shape) for k, v in state_dict.items()}
    shapes = [
        f"{k} has shape {saved[k]} in the file, {expected[k]} in the network"
        for k in sorted(set(expected) & set(saved))
        if expected[k] != saved[k]
    ]
    differences = [
        _listed("missing keys", sorted(set(expected) - set(saved))),
        _listed("unexpected keys", sorted(set(saved) - set(expected))),
        _listed("shape mismatches:", shapes),
    ]
    return [d for d in differences if d]


def load_model(
    path: str | Path, device: str | torch.device = "cpu", expected_hparams: dict[str, Any] | None = None
) -> tuple[nn.Module, CheckpointMetadata]:
    """Rebuild a network from a checkpoint written by :func:`save_checkpoint`.

    Args:
        path: the checkpoint file.
        device: device of the returned network.
        expected_hparams: constructor arguments the caller expects (all or some of them);
            any that differs from the checkpoint's is an error.

    Returns:
        ``(network, metadata)``: the network in eval mode on ``device`` and the checkpoint's
        metadata.

    Raises:
        CheckpointError: the file is missing, corrupt or truncated, or its architecture
            differs from ``expected_hparams`` or from its own state dict (the message names
            the file and the differences).
        FormatVersionError: written by an incompatible l2s version.
    """
    path = Path(path)
    payload = _load(path)
    metadata = _checkpoint_metadata(path, payload.get("metadata"))
    state_dict = payload.get("state_dict")
    hparams = metadata.hparams
    network_class = NETWORK_CLASSES[metadata.network_class]
    if not isinstance(state_dict, dict):
        raise CheckpointError(
            path, "not an l2s network checkpoint (needs state_dict, hparams and a known network_class)"
        )
    if expected_hparams is not None:
        differing = [
            f"{k}={hparams.get(k)!r} (expected {v!r})" for k, v in expected_hparams.items() if hparams.get(k) != v
        ]
        if differing:
            raise CheckpointError(path, f"architecture differs from the expected one: {', '.join(differing)}")
    try:
        network = network_class(**hparams)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(path, f"hparams {hparams} do not build a {network_class.__name__} ({exc})") from None
    differences = _architecture_differences(path, network, state_dict)
    if differences:
        raise CheckpointError(path, f"weights do not fit {network_class.__name__}({hparams}): {'; '.join(differences)}")
    network.load_state_dict(state_dict)
    return network.to(device).eval(), metadata


@dataclass
class ResumeState:
    """Everything a training run needs to continue after its last completed epoch.

    Attributes:
        model_state: the network's state dict.
        optimizer_state: the optimizer's state dict.
        epochs_done: number of completed epochs (epochs count from 1).
        best_val_dice: best validation Dice so far (``-inf`` before the first epoch).
        best_epoch: epoch of ``best_val_dice`` (0 before the first epoch).
        epochs_since_improvement: completed epochs since ``best_epoch``.
        log_rows: one dict per completed epoch (the rows of ``log.csv``).
        rng: random generator states, from :func:`capture_rng_states`.
    """

    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any]
    epochs_done: int
    best_val_dice: float
    best_epoch: int
    epochs_since_improvement: int
    log_rows: list[dict[str, float]] = field(default_factory=list)
    rng: dict[str, Any] = field(default_factory=dict)


def capture_rng_states() -> dict[str, Any]:
    """The states of torch's CPU generator, the current GPU's generator (if CUDA is in use),
    numpy's global generator and Python's ``random``, as tensors and plain lists (loadable
    with ``weights_only=True``)."""
    algorithm, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    version, python_state, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() and torch.cuda.is_initialized() else None,
        "numpy": [str(algorithm), [int(k) for k in keys], int(position), int(has_gauss), float(cached_gaussian)],
        "python": [int(version), [int(v) for v in python_state], gauss_next],
    }


def restore_rng_states(states: dict[str, Any]) -> None:
    """Set the generators to states captured by :func:`capture_rng_states`."""
    torch.set_rng_state(states["torch"].cpu())
    if states["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"].cpu())
    algorithm, keys, position, has_gauss, cached_gaussian = states["numpy"]
    np.random.set_state((algorithm, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached_gaussian))
    version, python_state, gauss_next = states["python"]
    random.setstate((version, tuple(python_state), gauss_next))


def save_resume_state(path: str | Path, state: ResumeState) -> None:
    """Write a resume state atomically (loadable with ``weights_only=True``)."""
    _save(
        Path(path),
        {
            "format_version": FORMAT_VERSION,
            "model_state": {k: v.detach().cpu() for k, v in state.model_state.items()},
            "optimizer_state": state.optimizer_state,
            "epochs_done": int(state.epochs_done),
            "best_val_dice": float(state.best_val_dice),
            "best_epoch": int(state.best_epoch),
            "epochs_since_improvement": int(state.epochs_since_improvement),
            "log_rows": [dict(row) for row in state.log_rows],
            "rng": state.rng,
        },
    )


def load_resume_state(path: str | Path) -> ResumeState:
    """Read a resume state written by :func:`save_resume_state` (tensors on the CPU).

    Raises:
        CheckpointError: the file is missing, corrupt or lacks a field.
        FormatVersionError: written by an incompatible l2s version.
    """
    path = Path(path)
    payload = _load(path)
    _check_format(path, payload)
    try:
        return ResumeState(
            model_state=payload["model_state"],
            optimizer_state=payload["optimizer_state"],
            epochs_done=int(payload["epochs_done"]),
            best_val_dice=float(payload["best_val_dice"]),
            best_epoch=int(payload["best_epoch"]),
            epochs_since_improvement=int(payload["epochs_since_improvement"]),
            log_rows=list(payload["log_rows"]),
            rng=dict(payload["rng"]),
        )
    except KeyError as exc:
        raise CheckpointError(path, f"resume state lacks the field {exc}") from None
