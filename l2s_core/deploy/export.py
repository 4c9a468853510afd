"""``l2s export``: one organ of a study as a self-contained model folder.

The converged runs of the organ (baseline, localiser, organ network; localisers and organ
networks paired in run order, as evaluation pairs them) are written as plain state dicts with a
:class:`~l2s_core.deploy.model_folder.ModelCard` holding the preprocessing of the prepared task,
each network's architecture and patch, and the pooled validation and test Dice of each pair and
baseline from the study's ``evaluation/<split>_runs.csv``. The folder is built under a
temporary name and renamed into place when complete.

Example:
    >>> card = export_model(Path("runs/quick"), "spleen", Path("models/spleen"))  # doctest: +SKIP
"""

from __future__ import annotations

import platform
from datetime import datetime, timezone
from pathlib import Path

import monai
import numpy as np
import pandas as pd
import torch

import l2s_core
from l2s_core.checkpoint import load_model
from l2s_core.data.cache import PreparedTask
from l2s_core.data.prepared_layout import PREPARED_DIR
from l2s_core.deploy.model_folder import (
    CARD_FILE,
    README_FILE,
    ModelCard,
    NetworkEntry,
    PairEntry,
    TrainingData,
    sha256_of,
)
from l2s_core.errors import ConfigError, InputDataError
from l2s_core.evaluate import converged_runs
from l2s_core.evaluation_tables import EVALUATION_DIR, runs_file
from l2s_core.files import atomic_open, atomic_write_text, remove_staged, remove_stale_staging, staging_folder
from l2s_core.study.localisation import evaluation_localisation
from l2s_core.train.run_files import BEST_FILE, FinishedRun
from l2s_core.vocabulary import SPLITS

__all__ = ["export_model", "model_card_readme"]


def _software() -> dict[str, str]:
    return {
        "l2s": l2s_core.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "monai": monai.__version__,
    }


def _pooled_dice(organ_dir: Path) -> dict[tuple[str, str, int], float]:
    """``(split, method, run)`` → pooled Dice from the evaluation CSVs that exist."""
    dice: dict[tuple[str, str, int], float] = {}
    for split in SPLITS:
        path = organ_dir / EVALUATION_DIR / runs_file(split)
        if not path.is_file():
            continue
        try:
            table = pd.read_csv(path)
            for row in table.itertuples():
                dice[(split, str(row.method), int(row.run))] = float(row.pooled_dice)
        except (pd.errors.ParserError, AttributeError, ValueError) as exc:
            raise InputDataError(path, f"not an evaluation table of l2s ({exc})") from None
    return dice


def _export_network(run: FinishedRun, weights_dir: Path) -> NetworkEntry:
    network, metadata = load_model(run.folder / BEST_FILE)
    path = weights_dir / f"{run.network}_{run.index:02d}.pt"
    with atomic_open(path) as handle:
        torch.save({k: v.detach().cpu() for k, v in network.state_dict().items()}, handle)
    config = run.summary.config
    return NetworkEntry(
        network=run.network,
        run=run.index,
        file=f"{weights_dir.name}/{path.name}",
        sha256=sha256_of(path),
        network_class=metadata.network_class,
        hparams=dict(metadata.hparams),
        patch_size=config.patch_size,
        amp=bool(config.amp),
        best_val_dice=run.summary.best_val_dice,
    )


def _pairs(runs: dict[str, list[FinishedRun]], dice: dict[tuple[str, str, int], float]) -> list[PairEntry]:
    def scores(method: str, index: int) -> dict[str, float | None]:
        return {split: dice.get((split, method, index)) for split in SPLITS}

    pairs = [
        PairEntry("two_stage", i, {"localiser": loc.index, "organ": org.index}, scores("two_stage", i))
        for i, (loc, org) in enumerate(zip(runs["localiser"], runs["organ"]))
    ]
    return pairs + [
        PairEntry("baseline", r.index, {"baseline": r.index}, scores("baseline", r.index)) for r in runs["baseline"]
    ]


def _card(
    organ: str, task: PreparedTask, networks: list[NetworkEntry], pairs: list[PairEntry], study_dir: Path
) -> ModelCard:
    preparation = task.preparation
    settings = preparation.settings
    localisation = evaluation_localisation(study_dir / organ)
    return ModelCard(
        organ=organ,
        modality=preparation.channel_modality or "unknown",
        n_channels=len(preparation.modality),
        channel=settings.channel,
        organ_labels=settings.organ_labels,
        labels=preparation.labels,
        normalisation=settings.normalisation,
        ct_stats=preparation.ct_stats,
        crop_margin=localisation.margin,
        lowres_divisors=localisation.divisors,
        networks=tuple(networks),
        pairs=tuple(pairs),
        training_data=TrainingData(
            task_name=preparation.task_name,
            task_dir=preparation.task_dir,
            cases={name: len(ids) for name, ids in task.split.items()},
            excluded=len(task.excluded),
            study_dir=str(study_dir.resolve()),
        ),
        software=_software(),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        fallback=localisation.fallback,
        box_mapping=localisation.box_mapping,
    )


def _dice_text(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def model_card_readme(card: ModelCard) -> str:
    """The short ``README.md`` of a model folder, written from its card."""
    data = card.training_data
    cases = ", ".join(f"{n} {name}" for name, n in data.cases.items())
    lines = [
        f"# l2s model: {card.organ}",
        "",
        f"Localise-to-segment networks for the {card.organ} ({card.modality}, channel {card.channel} of "
        f"{card.n_channels}), exported by l2s {card.software.get('l2s', '?')} on {card.created}.",
        "",
        f"Trained on task `{data.task_name}` ({cases}; {data.excluded} excluded), study `{data.study_dir}`.",
        "",
        f"Preprocessing: `{card.normalisation}` normalisation, organ labels "
        f"{list(card.organ_labels) if card.organ_labels else 'every non-zero label'}, crop margin "
        f"{card.crop_margin} voxels, low resolution = shape // {list(card.lowres_divisors)} (z, y, x).",
        "",
        "| method | index | runs | val Dice | test Dice |",
        "|---|---|---|---|---|",
        *[
            f"| {p.method} | {p.index} | {', '.join(f'{k} {v}' for k, v in p.runs.items())} | "
            f"{_dice_text(p.dice.get('val'))} | {_dice_text(p.dice.get('test'))} |"
            for p in card.pairs
        ],
        "",
        "Dice: pooled over the cases of the split, from the study's evaluation.",
        "",
        "```bash",
        "l2s predict {this folder} scan.nii.gz --out predictions/ --method two_stage --runs all",
        "```",
        "",
        f"Every weight file is a plain state dict (`torch.load(weights_only=True)`); `{CARD_FILE}` lists its "
        "sha256, and l2s refuses a folder whose files differ from it.",
        "",
        "Software: " + ", ".join(f"{k} {v}" for k, v in card.software.items()) + ".",
        "",
    ]
    return "\n".join(lines)


def export_model(study_dir: str | Path, organ: str, out_dir: str | Path) -> ModelCard:
    """Export one organ of a study as a model folder.

    Args:
        study_dir: the study folder ``runs/<study>`` (holding ``<organ>/prepared``,
            ``<organ>/<network>/run_<ii>`` and ``<organ>/evaluation``).
        organ: the organ to export.
        out_dir: the model folder to create (must not exist).

    Returns:
        The card written as ``model.json``.

    Raises:
        InputDataError: no such organ folder, or no converged run to export.
        ConfigError: ``out_dir`` exists already.
        CheckpointError: an unreadable checkpoint.
    """
    study_dir, out_dir = Path(study_dir), Path(out_dir)
    organ_dir = study_dir / organ
    if not (organ_dir / PREPARED_DIR).is_dir():
        known = sorted(p.parent.name for p in study_dir.glob("*/prepared"))
        raise InputDataError(
            organ_dir, f"no prepared organ '{organ}' in this study (organs: {', '.join(known) or 'none'})"
        )
    if out_dir.exists():
        raise ConfigError(out_dir, "already exists; choose another --out or delete it")
    task = PreparedTask(organ_dir / PREPARED_DIR)
    runs = {network: converged_runs(organ_dir, network) for network in ("baseline", "localiser", "organ")}
    if not runs["baseline"] and not (runs["localiser"] and runs["organ"]):
        raise InputDataError(organ_dir, "no converged baseline and no converged localiser/organ pair to export")
    remove_stale_staging(out_dir.parent, out_dir.name)  # of a killed run
    staging = staging_folder(out_dir.parent, out_dir.name)
    try:
        networks = [_export_network(run, staging / "weights") for chain in runs.values() for run in chain]
        card = _card(organ, task, networks, _pairs(runs, _pooled_dice(organ_dir)), study_dir)
        card.write(staging / CARD_FILE)
        atomic_write_text(staging / README_FILE, model_card_readme(card))
        staging.rename(out_dir)
    finally:
        remove_staged(staging, out_dir.parent)
    return card
