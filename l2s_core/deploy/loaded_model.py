"""A model folder's networks built for prediction: the torch side of a model folder
(:mod:`~l2s_core.deploy.model_folder` is its card and checks, without torch).

:func:`load_model_folder` picks the card's networks a prediction method needs (``two_stage``:
localiser and organ network; ``baseline``: the baseline; ``box``: the organ network), of one
pair (or baseline) by position or of all of them, builds each from its weights
(``torch.load(weights_only=True)``, never unpickling other objects) and wraps it as a
:class:`~l2s_core.infer.Segmenter` with its training patch. Several networks of one kind are
averaged: the log of their mean softmax, so that the argmax is the class of highest mean
probability.

Example:
    >>> model = load_model_folder("models/spleen", "two_stage", runs=None)  # doctest: +SKIP
    >>> sorted(model.networks)  # doctest: +SKIP
    ['localiser', 'organ']
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from l2s_core.deploy.model_folder import METHODS, ModelCard, NetworkEntry, open_model_folder
from l2s_core.errors import ConfigError, ModelFolderError, check_choice
from l2s_core.infer import Segmenter
from l2s_core.model import NETWORK_CLASSES

__all__ = ["LoadedModel", "load_model_folder"]

#: Networks each method needs.
_NETWORKS_OF = {"two_stage": ("localiser", "organ"), "baseline": ("baseline",), "box": ("organ",)}


class _MeanProbability(nn.Module):
    """Networks averaged: log of the mean softmax, so that the argmax is the class of highest mean probability."""

    def __init__(self, networks: Sequence[nn.Module]) -> None:
        super().__init__()
        self.networks = nn.ModuleList(networks)
        self.size_multiple = max(int(getattr(n, "size_multiple", 1)) for n in networks)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        mean = torch.stack([n(images).float().softmax(dim=1) for n in self.networks]).mean(dim=0)
        return mean.clamp_min(1e-7).log()


@dataclass(frozen=True)
class LoadedModel:
    """A model folder's card and the networks of one method, ready to predict.

    Attributes:
        card: the model card.
        method: ``two_stage``, ``baseline`` or ``box``.
        runs: the pair (or baseline) position used, or ``None`` for all.
        networks: network kind → the network (one, or the mean of several) with its training
            patch as the largest input it is given.
        entries: network kind → the card entries of the networks used.
        device: where the networks run.
    """

    card: ModelCard
    method: str
    runs: int | None
    networks: dict[str, Segmenter]
    entries: dict[str, list[NetworkEntry]]
    device: str


def _build(folder: Path, entry: NetworkEntry) -> nn.Module:
    path = folder / entry.file
    if entry.network_class not in NETWORK_CLASSES:
        raise ModelFolderError(
            path, f"network class {entry.network_class!r}; this l2s builds {', '.join(NETWORK_CLASSES)}"
        )
    try:
        network = NETWORK_CLASSES[entry.network_class](**entry.hparams)
        network.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except pickle.UnpicklingError:  # torch's own text advises weights_only=False, which l2s never does
        raise ModelFolderError(
            path, "holds objects other than tensors, which l2s never unpickles because that could run code"
        ) from None
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ModelFolderError(
            path, f"weights do not fit {entry.network_class}({entry.hparams}) ({' '.join(str(exc).split())[:200]})"
        ) from None
    return network.eval()


def _selected(card: ModelCard, method: str, runs: int | None) -> dict[str, list[NetworkEntry]]:
    """Card entries of each network kind the method uses."""
    kind = "baseline" if method == "baseline" else "two_stage"
    pairs = [p for p in card.pairs if p.method == kind]
    if not pairs:
        raise ModelFolderError(card.organ, f"the model has no {kind.replace('_', '-')} networks for method {method}")
    if runs is not None and not 0 <= runs < len(pairs):
        raise ConfigError("--runs", f"{runs} is not a {kind} position of this model (0..{len(pairs) - 1}, or all)")
    chosen = pairs if runs is None else [pairs[runs]]
    by_run = {(n.network, n.run): n for n in card.networks}
    return {network: [by_run[(network, p.runs[network])] for p in chosen] for network in _NETWORKS_OF[method]}


def load_model_folder(
    folder: str | Path,
    method: str = "two_stage",
    runs: int | None = None,
    device: str = "cpu",
    card: ModelCard | None = None,
    compile: bool | None = None,
) -> LoadedModel:
    """Open and check a model folder and build the networks of ``method``.

    Args:
        folder: folder written by ``l2s export``.
        method: ``two_stage``, ``baseline`` or ``box``.
        runs: pair (or baseline) position, or ``None`` for the mean of all.
        device: where the networks run.
        card: the folder's card as :func:`~l2s_core.deploy.model_folder.open_model_folder`
            returned it (already checked: its weights are not hashed again, e.g. when several
            methods of one folder are built); ``None``: open and check the folder here.
        compile: compile the networks (:mod:`l2s_core.compiling`); ``None``: on GPUs only.

    Raises:
        ConfigError: an unknown method or a pair position the model lacks.
        ModelFolderError, FormatVersionError: the folder does not match its card or this l2s.
    """
    check_choice("--method", method, METHODS)
    folder = Path(folder)
    card = card if card is not None else open_model_folder(folder)
    entries = _selected(card, method, runs)
    networks = {}
    for kind, chosen in entries.items():
        built = [_build(folder, e).to(device) for e in chosen]
        network = built[0] if len(built) == 1 else _MeanProbability(built).eval()
        networks[kind] = Segmenter(
            network, chosen[0].patch_size, sw_batch_size=None, amp=chosen[0].amp, compile=compile
        )
    return LoadedModel(card, method, runs, networks, entries, device)
