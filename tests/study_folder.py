"""Synthetic study folders for the analysis and findings tests: the files a study leaves
(prepared-task metadata, run summaries and logs, evaluation CSVs) written with chosen numbers."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from l2s_core.data.io import VolumeMeta
from l2s_core.data.prepared_layout import (
    CASE_META_FILE,
    CASES_DIR,
    PREP_FILE,
    SPLIT_FILE,
    CaseMeta,
    PrepareSettings,
    TaskPreparation,
)
from l2s_core.data.split import save_split
from l2s_core.evaluation_tables import CASE_COLUMNS, pooled_rows
from l2s_core.files import atomic_write_json
from l2s_core.study.params import PhantomOptions, StudyParams
from l2s_core.train.config import TrainConfig
from l2s_core.train.run_files import BEST_FILE, SUMMARY_FILE, RunSummary
from l2s_core.vocabulary import MSD_TASK_FOLDERS, DataSource

IDENTITY = tuple(tuple(float(i == j) for j in range(4)) for i in range(4))
#: organ → (cases per split (train, val, test), foreground share of every case).
Datasets = dict[str, tuple[tuple[int, int, int], float]]
#: organ → network → (converged, total_seconds) per finished run, in order of run index.
Runs = dict[str, dict[str, list[tuple[bool, float]]]]
#: organ → split → method → pooled Dice of each run.
Dice = dict[str, dict[str, dict[str, list[float]]]]


def write_prepared(prepared: Path, organ: str, sizes: tuple[int, int, int], share: float) -> None:
    """``prep.json``, ``split.json`` and one ``meta.json`` per case, as preparation writes them."""
    ids = [f"{organ}_{i}" for i in range(sum(sizes))]
    TaskPreparation(
        task_name=f"Task_{organ}",
        task_dir=f"/phantom/{organ}",
        settings=PrepareSettings(),
        modality={"0": "CT"},
        labels={"0": "background", "1": organ},
    ).write(prepared / PREP_FILE)
    n_train, n_val, _ = sizes
    save_split(
        prepared / SPLIT_FILE,
        {"train": ids[:n_train], "val": ids[n_train : n_train + n_val], "test": ids[n_train + n_val :]},
        seed=42,
        order="table1",
    )
    source = VolumeMeta("/phantom/image.nii.gz", IDENTITY, (10, 10, 10), IDENTITY, (1.0, 1.0, 1.0))
    for case_id in ids:
        CaseMeta(
            case_id=case_id,
            image_path=f"/phantom/{case_id}.nii.gz",
            label_path=f"/phantom/{case_id}_label.nii.gz",
            source=source,
            original_shape=(10, 10, 10),
            lowres_shape=(3, 5, 5),
            organ_box=(4, 4, 4, 6, 6, 6),
            crop_box=(-11, -11, -11, 21, 21, 21),
            crop_margin=15,
            label_values=(0, 1),
            organ_voxels=round(share * 1000),
            foreground_share=share,
        ).write(prepared / CASES_DIR / case_id / CASE_META_FILE)


def write_run(run_dir: Path, network: str, index: int, converged: bool, seconds: float) -> None:
    """``summary.json``, the best weights (an empty ``best.pt``) and a ``log.csv`` of ``index + 2``
    epochs (train Dice 0.1 × epoch)."""
    epochs = index + 2
    log = pd.DataFrame(
        {
            "epoch": range(1, epochs + 1),
            "wall_seconds": seconds / epochs,
            "train_loss": 0.5,
            "train_dice": [0.1 * e for e in range(1, epochs + 1)],
            "val_dice": 0.3,
        }
    )
    run_dir.mkdir(parents=True)
    log.to_csv(run_dir / "log.csv", index=False)
    (run_dir / BEST_FILE).touch()
    run_summary(network, index, converged, seconds, epochs).write(run_dir / SUMMARY_FILE)


def run_summary(network: str, index: int, converged: bool, seconds: float = 1.0, epochs: int = 2) -> RunSummary:
    """The summary of a finished run (best epoch 1 at validation Dice 0.3, stopped by patience)."""
    return RunSummary(
        converged=converged,
        diverged=False,
        best_epoch=1,
        best_val_dice=0.3,
        total_seconds=seconds,
        epochs=epochs,
        stop_reason="patience",
        network=network,
        seed=index,
        config=TrainConfig(prepared_dir="prepared", run_dir=f"{network}/run_{index:02d}", network=network, seed=index),
    )


#: Share of the image a localised method's box covers in :func:`case_rows` (the baseline's: 1).
LOCALISED_BOX_SHARE = 0.1


def case_rows(organ: str, split: str, method: str, run: int, dice: float, share: float = 0.01) -> list[dict]:
    """Two cases whose counts pool to ``dice`` (TP = 100 d, FP = FN = 100 (1 - d)); the baseline
    segments the whole image (organ share ``share``), a localised method a box of
    :data:`LOCALISED_BOX_SHARE` of it holding the whole organ."""
    tp, wrong = round(100 * dice), round(100 * (1 - dice))
    box_share = 1.0 if method == "baseline" else LOCALISED_BOX_SHARE
    return [
        {
            "organ": organ,
            "split": split,
            "method": method,
            "run": run,
            "localiser_run": run if method == "two_stage" else None,
            "organ_run": run if method != "baseline" else None,
            "case_id": f"{organ}_{c}",
            "tp": tp,
            "fp": wrong,
            "fn": wrong,
            "dice": dice,
            "hd95_mm": 3.0,
            "surface_dice": 0.9,
            "seconds": 0.5,
            "fallback": "none",
            "box_share": box_share,
            "box_foreground_share": share / box_share,
        }
        for c in range(2)
    ]


def write_evaluation(
    evaluation: Path, organ: str, dice: dict[str, dict[str, list[float]]], share: float = 0.01
) -> None:
    """``<split>_cases.csv`` and ``<split>_runs.csv`` of one organ from its runs' pooled Dice
    (organ share of the image ``share``)."""
    for split, methods in dice.items():
        rows = [
            row
            for method, values in methods.items()
            for run, value in enumerate(values)
            for row in case_rows(organ, split, method, run, value, share)
        ]
        cases = pd.DataFrame(rows, columns=list(CASE_COLUMNS)).astype({"localiser_run": "Int64", "organ_run": "Int64"})
        evaluation.mkdir(parents=True, exist_ok=True)
        cases.to_csv(evaluation / f"{split}_cases.csv", index=False)
        pooled_rows(cases).to_csv(evaluation / f"{split}_runs.csv", index=False)


def _task_folders(organs: list[str], data: DataSource) -> dict[str, str]:
    """Each organ's task folder: its own on MSD-layout data; on phantom data, an organ outside the
    paper's uses the heart phantom."""
    if data == "msd":
        return {organ: f"Task_{organ}" for organ in organs}
    return {organ: MSD_TASK_FOLDERS["heart"] for organ in organs if organ not in MSD_TASK_FOLDERS}


def write_study(study_dir: Path, datasets: Datasets, runs: Runs, dice: Dice, data: DataSource = "phantom") -> Path:
    """A study folder with ``study_params.json`` (organs in the order of ``datasets``), the
    prepared tasks, the finished runs and the evaluation CSVs of the organs that have Dice."""
    params = StudyParams(
        data=data,
        study=study_dir.name,
        data_root=Path("/data/msd") if data == "msd" else None,
        phantom=PhantomOptions(n_cases=10, shape=(12, 16, 16), seed=0),
        organs=tuple(datasets),
        task_folders=_task_folders(list(datasets), data),
    )
    atomic_write_json(study_dir / "study_params.json", params.to_dict())
    for organ, (sizes, share) in datasets.items():
        write_prepared(study_dir / organ / "prepared", organ, sizes, share)
        for network, network_runs in runs.get(organ, {}).items():
            for index, (converged, seconds) in enumerate(network_runs):
                write_run(study_dir / organ / network / f"run_{index:02d}", network, index, converged, seconds)
        if organ in dice:
            write_evaluation(study_dir / organ / "evaluation", organ, dice[organ], share)
    return study_dir


#: The synthetic study of :func:`synthetic_study`: organ → (cases per split, foreground share).
DATASETS = {"spleen": ((6, 2, 2), 0.005), "heart": ((3, 1, 1), 0.004)}
#: organ → network → (converged, total_seconds) per finished run, in order of run index.
RUNS = {
    "spleen": {
        "baseline": [(True, 600), (False, 120), (True, 900), (True, 300)],
        "localiser": [(True, 60), (True, 120), (True, 180)],
        "organ": [(True, 30), (True, 30), (True, 30)],
    },
    "heart": {
        "baseline": [(True, 60), (True, 60), (False, 60)],
        "localiser": [(True, 60), (True, 60)],
        "organ": [(True, 60), (True, 60)],
    },
}
#: organ → split → method → pooled Dice of each run.
DICE = {
    "spleen": {
        "val": {"baseline": [0.60, 0.65, 0.70], "two_stage": [0.80, 0.82, 0.81], "gt_localised": [0.86, 0.87, 0.85]},
        "test": {"baseline": [0.40, 0.50, 0.45], "two_stage": [0.44, 0.52, 0.47], "gt_localised": [0.80, 0.83, 0.81]},
    },
    "heart": {
        "val": {"baseline": [0.50, 0.54], "two_stage": [0.60, 0.62], "gt_localised": [0.70, 0.72]},
        "test": {"baseline": [0.52, 0.50], "two_stage": [0.58, 0.63], "gt_localised": [0.69, 0.74]},
    },
}


def synthetic_study(tmp_path: Path) -> Path:
    """A study folder ``runs/synth`` with a spleen and a heart (:data:`DATASETS`, :data:`RUNS`,
    :data:`DICE`) and an unfinished spleen baseline run 4 (a log, no summary)."""
    study_dir = write_study(tmp_path / "runs" / "synth", DATASETS, RUNS, DICE)
    unfinished = study_dir / "spleen" / "baseline" / "run_04"
    unfinished.mkdir()
    (unfinished / "log.csv").write_text("epoch,wall_seconds,train_loss,train_dice,val_dice\n1,9999,1,0,0\n")
    return study_dir
