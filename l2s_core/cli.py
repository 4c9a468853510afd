"""The ``l2s`` command line.

Sub-commands are thin wrappers over l2s_core functions; an :class:`~l2s_core.errors.L2SError`
is printed as one line ``l2s: error: <file>: <problem>`` with exit status 2, never a traceback.
"""

from __future__ import annotations

__all__ = ["build_parser", "main"]

import argparse
import collections
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from l2s_core.errors import ConfigError, L2SError
from l2s_core.record_flags import RecordFlags

if TYPE_CHECKING:
    from l2s_core.data.phantom.settings import PhantomSettings
    from l2s_core.data.prepared_layout import PrepareSettings


def _phantom_flags() -> RecordFlags[PhantomSettings]:
    """The flags of ``l2s phantom``: every phantom setting (the case count as ``--cases``)."""
    from l2s_core.data.phantom.settings import PhantomSettings

    return RecordFlags(PhantomSettings, renamed={"n_cases": "--cases"})


def _prepare_flags() -> RecordFlags[PrepareSettings]:
    """The flags of ``l2s prepare``: every preparation setting (the split seed as ``--seed``)."""
    from l2s_core.data.prepared_layout import PrepareSettings

    return RecordFlags(PrepareSettings, renamed={"split_seed": "--seed"})


def _cmd_phantom(args: argparse.Namespace) -> None:
    from l2s_core.data.phantom.task import generate_phantom_tasks

    options = _phantom_flags().record_of(args, "l2s phantom")
    tasks = generate_phantom_tasks(args.out, organs=args.organs, settings=options)
    for organ, folder in tasks.items():
        print(f"{organ}: {folder}")


def _cmd_prepare(args: argparse.Namespace) -> None:
    from l2s_core.data.prepare import prepare_task

    settings = _prepare_flags().record_of(args, "l2s prepare")
    statuses = prepare_task(args.task_dir, args.out, settings, skip_empty=args.skip_empty, workers=args.workers)
    counts = collections.Counter(status.outcome for status in statuses.values())
    print(f"{args.out}: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    for case_id, status in statuses.items():
        if status.reason:
            print(f"  {case_id}: {status}")


def _cmd_run(args: argparse.Namespace) -> int:
    if args.dry_run:
        from l2s_core.study.dry_run import DEFAULT_EPOCHS_PER_RUN, dry_run

        epochs = (args.epochs_per_run or DEFAULT_EPOCHS_PER_RUN) if args.measure else None
        print(
            dry_run(
                args.params,
                root=args.root,
                data_root=args.data_root,
                gpus_per_run=args.gpus_per_run,
                epochs_per_run=epochs,
            )
        )
        return 0
    from l2s_core.study.runner import run_study

    status = run_study(
        args.params,
        root=args.root,
        jobs=args.jobs,
        gpus_per_run=args.gpus_per_run,
        executor=args.executor,
        data_root=args.data_root,
    )
    return 1 if status.failed else 0


def _cmd_report(args: argparse.Namespace) -> None:
    from l2s_core.study.report import render_report

    print(render_report(args.study, root=args.root))


def _cmd_notebooks(args: argparse.Namespace) -> None:
    from l2s_core.notebook_files import copy_notebooks

    for path in copy_notebooks(args.dir):
        print(path)


def _cmd_export(args: argparse.Namespace) -> None:
    from l2s_core.deploy.export import export_model

    card = export_model(args.study_dir, args.organ, args.out)
    print(
        f"{args.out}: {card.organ}, {len(card.networks)} networks, "
        + ", ".join(f"{p.method} {p.index} test Dice {p.dice.get('test')}" for p in card.pairs)
    )


def _runs(value: str) -> int | None:
    """``--runs``: a pair position or ``all``."""
    if value == "all":
        return None
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a pair position (0, 1, ...) or 'all', got {value!r}") from None


def _cmd_predict(args: argparse.Namespace) -> None:
    from l2s_core.deploy.model_folder import CARD_FILE
    from l2s_core.deploy.predict import predict_scans
    from l2s_core.deploy.structures import parse_code

    n_models = next((i for i, p in enumerate(args.paths) if not (p / CARD_FILE).is_file()), len(args.paths))
    if n_models == 0:
        raise ConfigError(
            args.paths[0], f"is not a model folder (no {CARD_FILE}); give MODEL_DIR [MODEL_DIR ...] INPUT ..."
        )
    if n_models == len(args.paths):
        raise ConfigError("INPUT", "give at least one NIfTI file or DICOM series folder after the model folders")
    table = predict_scans(
        args.paths[:n_models],
        args.paths[n_models:],
        args.out,
        method=args.method,
        runs=args.runs,
        box=args.box,
        box_mm=args.box_mm,
        device=args.device,
        box_guard=args.box_guard,
        dicom_seg=args.dicom_seg,
        codes=dict(parse_code(c) for c in args.code),
    )
    for row in table.itertuples():
        files = ", ".join(str(f) for f in (row.mask, row.rtstruct, row.seg) if f)
        grown = f", box grown {row.box_grows}x" if row.box_grows else ""
        print(f"{row.input}: {row.structure} {row.volume_ml:.1f} mL{grown} -> {files}")
    print(f"{Path(args.out) / 'predictions.csv'}")


def _cmd_import_dicom(args: argparse.Namespace) -> None:
    from l2s_core.data.dicom.import_task import MISSING_FILE, import_dicom

    result = import_dicom(args.dicom_root, args.structure.split(","), args.out)
    print(f"{result.task_dir}: {len(result.imported)} patients imported")
    if result.missing:
        print(
            f"{len(result.missing)} patients without the structure (listed in {result.task_dir / MISSING_FILE}): "
            + ", ".join(result.missing)
        )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``l2s``."""
    from l2s_core.vocabulary import EXECUTORS, PAPER_ORGANS

    parser = argparse.ArgumentParser(prog="l2s", description="Localise to segment: organ-at-risk segmentation study.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("phantom", help="write the built-in phantom tasks in MSD layout")
    p.add_argument("--out", type=Path, required=True, help="folder that receives one MSD task folder per organ")
    p.add_argument("--organs", nargs="+", default=list(PAPER_ORGANS))
    _phantom_flags().add_to(p)
    p.set_defaults(func=_cmd_phantom)

    p = sub.add_parser("prepare", help="MSD task folder -> prepared cache (full, low-res, crop, split.json)")
    p.add_argument("task_dir", type=Path)
    p.add_argument("--out", type=Path, required=True, help="prepared task folder (resumed if it exists)")
    _prepare_flags().add_to(p)
    p.add_argument("--skip-empty", action="store_true", help="leave out cases with an empty organ mask (recorded)")
    p.add_argument("--workers", type=int, default=None, help="parallel processes (default: all cores)")
    p.set_defaults(func=_cmd_prepare)

    p = sub.add_parser(
        "run", help="run or resume a whole study through Papermill: prepare, train, evaluate, analysis, report"
    )
    p.add_argument("params", type=Path, help="study parameter file, e.g. papermill_params/quick.yaml")
    p.add_argument(
        "--jobs", type=int, default=1, help="steps run at the same time (with GPUs: at most GPUs / gpus per run)"
    )
    p.add_argument(
        "--gpus-per-run",
        type=int,
        default=None,
        help="data-parallel GPUs of a training run (default: the file's gpus_per_run)",
    )
    p.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="local: threads of this process; slurm: one Slurm job per step (submitit); "
        "submitit-local: submitit jobs on this machine",
    )
    p.add_argument(
        "--data-root", type=Path, default=None, help="folder of the MSD task folders (replaces the file's data_root)"
    )
    p.add_argument(
        "--root", type=Path, default=Path("."), help="study root holding runs/, executed/ and reports/ (default: .)"
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="check the file and the data, print every step and each network's size, input and memory; run nothing",
    )
    p.add_argument(
        "--measure",
        action="store_true",
        help="with --dry-run: time one training step and one validation pass per network on this device and "
        "print seconds per epoch and the projected wall time of the study",
    )
    p.add_argument(
        "--epochs-per-run",
        type=int,
        default=None,
        help="epochs a run is assumed to take for --measure (default: 100, dry_run.DEFAULT_EPOCHS_PER_RUN; "
        "the paper states none)",
    )
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("report", help="render reports/<study>/report.html from the executed analysis notebook")
    p.add_argument("study", help="study name (folder runs/<study>)")
    p.add_argument("--root", type=Path, default=Path("."), help="study root (default: .)")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser(
        "notebooks", help="copy the study notebooks (prepare, train, evaluate, analysis, explore) into DIR"
    )
    p.add_argument(
        "dir", type=Path, help="folder to copy them into (created; existing notebooks are never overwritten)"
    )
    p.set_defaults(func=_cmd_notebooks)

    p = sub.add_parser(
        "export", help="one organ of a study as a self-contained model folder (model.json, README.md, weights)"
    )
    p.add_argument("study_dir", type=Path, help="the study folder runs/<study>")
    p.add_argument("--organ", required=True)
    p.add_argument("--out", type=Path, required=True, help="model folder to create")
    p.set_defaults(func=_cmd_export)

    from l2s_core.box_guard import DEFAULT_BOX_GUARD
    from l2s_core.deploy.model_folder import METHODS as PREDICT_METHODS  # light import, no torch

    p = sub.add_parser("predict", help="segment NIfTI files or DICOM series folders with exported models")
    p.add_argument(
        "paths",
        type=Path,
        nargs="+",
        metavar="MODEL_DIR [MODEL_DIR ...] INPUT",
        help="model folders (one organ each), then NIfTI files and DICOM series folders",
    )
    p.add_argument("--out", type=Path, required=True, help="output folder: masks, RTSTRUCTs, SEGs, predictions.csv")
    p.add_argument("--method", choices=PREDICT_METHODS, default="two_stage")
    p.add_argument(
        "--box",
        type=int,
        nargs=6,
        metavar=("Z0", "Y0", "X0", "Z1", "Y1", "X1"),
        default=None,
        help="method box: half-open voxel box in the scan's RAS (z, y, x) array",
    )
    p.add_argument(
        "--box-mm",
        type=float,
        nargs=6,
        metavar=("X0", "Y0", "Z0", "X1", "Y1", "Z1"),
        default=None,
        help="method box: two corners in patient coordinates (DICOM LPS, mm)",
    )
    p.add_argument("--runs", type=_runs, default=None, help="pair position, or all (default): average the pairs")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    p.add_argument(
        "--box-guard",
        type=int,
        default=DEFAULT_BOX_GUARD,
        metavar="N",
        help=f"two_stage: grow the organ box up to N times where the organ touches it (default {DEFAULT_BOX_GUARD}; "
        "0: the paper's method)",
    )
    p.add_argument("--dicom-seg", action="store_true", help="also write a DICOM-SEG per DICOM series (highdicom)")
    p.add_argument(
        "--code",
        action="append",
        default=[],
        metavar="ORGAN=NAME,SCHEME,VALUE,MEANING",
        help="structure name and coded concept of an organ l2s has none for (repeatable)",
    )
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("import-dicom", help="patient folders of DICOM series + RTSTRUCT -> MSD task folder")
    p.add_argument("dicom_root", type=Path, help="folder of patient folders")
    p.add_argument("--structure", required=True, help="structure name and aliases, comma-separated (case ignored)")
    p.add_argument("--out", type=Path, required=True, help="MSD task folder to create")
    p.set_defaults(func=_cmd_import_dicom)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``l2s`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = args.func(args)
    except L2SError as exc:
        print(f"l2s: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. a full disk: every write is atomic, so nothing partial is left
        where = exc.filename or "l2s"
        print(
            f"l2s: error: {where}: {exc.strerror or exc}; nothing partial was written, "
            "fix the cause and run the same command again",
            file=sys.stderr,
        )
        return 2
    except MemoryError as exc:  # a size no check foresaw: one line, not numpy's traceback
        print(
            f"l2s: error: l2s {args.command}: ran out of memory ({' '.join(str(exc).split()) or 'MemoryError'}); "
            "finished work is kept, free memory or use smaller inputs and run the same command again",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("l2s: interrupted; finished work is kept, run the same command again to resume", file=sys.stderr)
        return 130
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
