"""Study parameter files (``papermill_params/<study>.yaml``): loading and validation.

A parameter file describes a whole study: where the data come from, which organs and networks,
how many converged runs to train, and the options of preparation, training and evaluation.
It is read with ``yaml.safe_load`` and checked completely before anything runs: an unknown key
at any level, an unknown organ or network, or a value of the wrong type stops with a one-line
:class:`~l2s_core.errors.ConfigError` naming the file and the key path, e.g.
``quick.yaml: train.patience: expected int, got str 'twenty'``.

Layout of a parameter file (every key but ``data`` is optional)::

    study: quick                 # names runs/<study>, executed/<study>, reports/<study>
    data: phantom                # "phantom" (generated) or "msd" (a Decathlon download)
    data_root: /data/msd         # folder holding Task09_Spleen, ... (data: msd)
    phantom: {n_cases: 10, shape: [32, 96, 96], seed: 0}
    organs: [spleen, pancreas, prostate, liver, heart, kidney]   # any names
    task_folders: {kidney: Task50_Kidney}   # name -> task folder under data_root (the paper's
                                            # five organs default to their MSD folders)
    networks: [baseline, localiser, organ]
    runs: 10                     # converged runs wanted per organ and network
    max_runs: 30                 # cap on runs per organ and network, converged or not
    gpus_per_run: 2              # data-parallel GPUs of one training run
    prepare: {normalisation: zscore, channel: 0, ..., per_organ: {prostate: {channel: 0}}}
    train: {patch_size: [64, 256, 256], ..., per_network: {baseline: {...}}, per_organ: {liver: {...}}}
    evaluate: {splits: [val, test], fallback: whole_image, surface_tolerance_mm: 2.0}
    slurm: {partition: gpu, timeout_min: 2880, cpus_per_task: 8, mem_gb: 64}

The keys of ``train`` are the fields of :class:`~l2s_core.train.config.TrainSettings`: those of
:class:`~l2s_core.train.config.TrainConfig` except the ones the study sets for each run
(:data:`STUDY_SET_TRAIN_FIELDS`: the run's folders, its network, its seed = run index, and its
world size = ``gpus_per_run`` on GPUs).

The runner keeps a snapshot of the validated parameters as ``runs/<study>/study_params.json``
(:meth:`StudyParams.to_dict`), which :func:`load_study_params` reads as well; the notebooks of
a study read that snapshot.
"""

from __future__ import annotations

__all__ = [
    "AnalysisOptions",
    "EvaluateOptions",
    "PhantomOptions",
    "PrepareOptions",
    "STUDY_SET_TRAIN_FIELDS",
    "SlurmOptions",
    "StudyParams",
    "TrainOptions",
    "load_study_params",
]

import dataclasses
import re
import typing
from pathlib import Path
from typing import Any, ClassVar

import yaml

from l2s_core.data.phantom.settings import PhantomSettings
from l2s_core.data.prepared_layout import PrepareSettings
from l2s_core.errors import ConfigError, FormatVersionError, InputDataError
from l2s_core.files import NESTED_TOO_DEEPLY, read_json
from l2s_core.prediction import Localisation
from l2s_core.records import Checker, plain
from l2s_core.train.config import TrainConfig, TrainSettings
from l2s_core.vocabulary import (
    MSD_TASK_FOLDERS,
    NETWORKS,
    PAPER_ORGANS,
    SPLITS,
    BoxMapping,
    DataSource,
    Fallback,
    Network,
    Split,
    TrainingTimeRuns,
)

_ORGAN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
#: TrainConfig fields the study sets for each run; a parameter file cannot set them.
STUDY_SET_TRAIN_FIELDS = tuple(
    f.name for f in dataclasses.fields(TrainConfig) if f.name not in {g.name for g in dataclasses.fields(TrainSettings)}
)


@dataclasses.dataclass(frozen=True)
class PhantomOptions(PhantomSettings):
    """Generated phantom tasks (``data: phantom``): the
    :class:`~l2s_core.data.phantom.settings.PhantomSettings` (same names: profile, n_cases,
    shape, scale, seed), with per-organ overrides.

    Attributes:
        per_organ: organ → some of the settings, replacing them for that organ (e.g. a
            larger scale for a small organ, or each organ's case count).
    """

    per_organ: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def for_organ(self, organ: str) -> PhantomOptions:
        """These options with the overrides of ``organ`` applied (``per_organ`` emptied)."""
        return dataclasses.replace(self, **self.per_organ.get(organ, {}), per_organ={})


@dataclasses.dataclass(frozen=True)
class PrepareOptions(PrepareSettings):
    """Options of :func:`l2s_core.data.prepare.prepare_task`, with per-organ overrides: the
    :class:`~l2s_core.data.prepared_layout.PrepareSettings` (same names: normalisation, channel,
    organ_labels, split_seed, split_order, crop_margin, max_cases, lowres_divisors, crop_label)
    and how to run it.

    Attributes:
        skip_empty: leave out cases with an empty organ mask instead of stopping.
        workers: parallel preparation processes (``None``: all cores).
        per_organ: organ → some of the options, replacing them for that organ.
    """

    skip_empty: bool = False
    workers: int | None = None
    per_organ: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def for_organ(self, organ: str) -> PrepareOptions:
        """These options with the overrides of ``organ`` applied (``per_organ`` emptied)."""
        return dataclasses.replace(self, **self.per_organ.get(organ, {}), per_organ={})

    def settings(self, organ: str) -> PrepareSettings:
        """The :class:`~l2s_core.data.prepared_layout.PrepareSettings` of ``organ`` (its fields
        are options of the same names)."""
        options = self.for_organ(organ)
        return PrepareSettings(**{f.name: getattr(options, f.name) for f in dataclasses.fields(PrepareSettings)})


@dataclasses.dataclass(frozen=True)
class TrainOptions(TrainSettings):
    """Training settings shared by the runs of a study (the
    :class:`~l2s_core.train.config.TrainSettings`, same names and defaults), with per-network and
    per-organ overrides.

    Attributes:
        per_network: network → some of the settings, replacing them for that network.
        per_organ: organ → some of the settings, replacing both for that organ's networks.
    """

    #: TrainConfig fields a parameter file cannot set, with the reason (see :class:`~l2s_core.records.Checker`).
    refused_keys: ClassVar[dict[str, str]] = {
        name: "set by the study for each run, not in the parameter file" for name in STUDY_SET_TRAIN_FIELDS
    }

    per_network: dict[Network, dict[str, Any]] = dataclasses.field(default_factory=dict)
    per_organ: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def for_run(self, organ: str | None, network: str) -> TrainSettings:
        """The settings of ``network`` on ``organ`` (the overrides of both applied; ``organ``
        ``None``: the network's settings without organ overrides)."""
        overrides = {**self._network_overrides(network), **self.per_organ.get(organ or "", {})}
        return TrainSettings(**{**self.settings(), **overrides})

    def _network_overrides(self, network: str) -> dict[str, Any]:
        """The overrides of ``network`` (none for a network the section does not name)."""
        return self.per_network.get(typing.cast(Network, network), {})

    def source_key(self, organ: str, network: str, name: str) -> str:
        """The key path in the parameter file that sets field ``name`` for this run."""
        if name in self.per_organ.get(organ, {}):
            return f"train.per_organ.{organ}.{name}"
        if name in self._network_overrides(network):
            return f"train.per_network.{network}.{name}"
        return f"train.{name}"


@dataclasses.dataclass(frozen=True)
class EvaluateOptions:
    """Options of :func:`l2s_core.evaluate.evaluate_organ`.

    Attributes:
        splits: splits evaluated (``val``, ``test``).
        fallback: when the localiser (or label) gives no box: ``whole_image`` segments the
            whole image with the organ network, ``empty`` predicts no organ.
        surface_tolerance_mm: tolerance of the surface Dice, in millimetres.
        save_predictions: also write every predicted mask as NIfTI.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``; under ``l2s run`` an evaluation step
            sees one GPU (:func:`~l2s_core.study.execute.step_gpus`), its ``cuda:0``.
        box_mapping: how the localiser's low-resolution box reaches full resolution: ``scale``
            (floor/ceil) or ``upsample_nearest`` (the released code).
        guard_grows: > 0 evaluates a fourth method, ``two_stage_guarded``: two_stage with the
            second-stage guard (an l2s addition), growing the organ network's box at most this
            many times where its mask touches a face inside the image; 0 (the default and the
            paper profiles) evaluates the paper's three methods only; ``l2s predict`` uses 3.
    """

    splits: tuple[Split, ...] = SPLITS
    fallback: Fallback = Localisation.fallback
    surface_tolerance_mm: float = 2.0
    save_predictions: bool = False
    device: str = "auto"
    box_mapping: BoxMapping = Localisation.box_mapping
    guard_grows: int = Localisation.guard_grows

    def localisation(self, settings: PrepareSettings) -> Localisation:
        """The :class:`~l2s_core.prediction.Localisation` of a task prepared with ``settings``
        (its margin and divisors) under these options."""
        return Localisation.of_settings(settings, self.fallback, self.box_mapping, self.guard_grows)


@dataclasses.dataclass(frozen=True)
class AnalysisOptions:
    """Options of the analysis (the report).

    Attributes:
        training_time_runs: runs averaged for Table 2's training time: ``all`` finished runs
            or the ``converged`` ones (the released code).
    """

    training_time_runs: TrainingTimeRuns = "all"


@dataclasses.dataclass(frozen=True)
class SlurmOptions:
    """Resources of each step submitted with ``l2s run --executor slurm`` (one GPU node share).

    Attributes:
        partition: Slurm partition (``None``: the cluster default).
        timeout_min: wall-clock limit of one step in minutes.
        cpus_per_task: CPU cores of one step.
        mem_gb: memory of one step in GB.
    """

    partition: str | None = None
    timeout_min: int = 2880
    cpus_per_task: int = 8
    mem_gb: int = 64


@dataclasses.dataclass(frozen=True)
class StudyParams:
    """A validated study parameter file.

    Attributes:
        study: study name; folders ``runs/<study>``, ``executed/<study>``, ``reports/<study>``.
        data: ``phantom`` (tasks generated into ``runs/<study>/phantom``) or ``msd``.
        data_root: absolute folder holding the MSD task folders (``data: msd``), else ``None``.
        phantom: phantom generator options.
        organs: organs of the study, in order: any names (a plain word each).
        task_folders: organ → its task folder name under ``data_root`` (or, on phantom data,
            the MSD folder of the phantom it uses); the paper's five organs default to their
            MSD folders (:data:`~l2s_core.vocabulary.MSD_TASK_FOLDERS`).
        networks: networks trained per organ.
        runs: converged runs wanted per organ and network.
        max_runs: the most runs made per organ and network, converged or not.
        gpus_per_run: data-parallel GPUs (processes) of one training run on GPUs.
        prepare: preparation options.
        train: training options.
        evaluate: evaluation options.
        analysis: analysis options.
        slurm: resources of each step on Slurm.
        source: the file the parameters were read from (named in error messages).
    """

    data: DataSource
    study: str = ""
    data_root: Path | None = None
    phantom: PhantomOptions = PhantomOptions()
    organs: tuple[str, ...] = PAPER_ORGANS
    task_folders: dict[str, str] = dataclasses.field(default_factory=dict)
    networks: tuple[Network, ...] = NETWORKS
    runs: int = 10
    max_runs: int = 30
    gpus_per_run: int = 1
    prepare: PrepareOptions = PrepareOptions()
    train: TrainOptions = TrainOptions()
    evaluate: EvaluateOptions = EvaluateOptions()
    analysis: AnalysisOptions = AnalysisOptions()
    slurm: SlurmOptions = SlurmOptions()
    source: str = dataclasses.field(default="", compare=False, metadata={"in_file": False})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict in the layout of a parameter file (``source`` left out)."""
        values = plain(self)
        values.pop("source")
        return values

    def task_folder(self, organ: str) -> str:
        """The task folder name of ``organ`` (``task_folders``, else the paper organ's MSD folder).

        Raises:
            ConfigError: an organ with no known folder.
        """
        folders = {**MSD_TASK_FOLDERS, **self.task_folders}
        if organ not in folders:
            raise ConfigError(
                f"{self.source}: task_folders",
                f"no task folder for organ {organ!r}; add 'task_folders: {{{organ}: <folder under data_root>}}'",
            )
        return folders[organ]

    def phantom_organ(self, organ: str) -> str:
        """The built-in phantom an organ of a ``data: phantom`` study uses (by its MSD folder).

        Raises:
            ConfigError: the organ's task folder is none of the phantoms' MSD folders.
        """
        folder = self.task_folder(organ)
        by_folder = {f: o for o, f in MSD_TASK_FOLDERS.items()}
        if folder not in by_folder:
            raise ConfigError(
                f"{self.source}: task_folders.{organ}",
                f"{folder!r} is not a phantom task; phantoms exist for {', '.join(MSD_TASK_FOLDERS.values())}",
            )
        return by_folder[folder]

    def write_phantom_task(self, organ: str, folder: Path) -> Path:
        """Generate the phantom task of an organ of a ``data: phantom`` study into ``folder`` with the
        study's phantom settings (the one place that turns them into a call); returns the task folder."""
        from l2s_core.data.phantom.task import generate_phantom_task  # imported here: it loads the renderer

        return generate_phantom_task(self.phantom_organ(organ), folder, self.phantom.for_organ(organ), progress=False)

    def task_dir(self, organ: str) -> Path:
        """The task folder of ``organ`` under ``data_root`` (``data: msd``).

        Raises:
            ConfigError: ``data_root`` is unset or lacks the organ's task folder.
        """
        if self.data_root is None:
            raise ConfigError(f"{self.source}: data_root", "required when data is msd (or pass --data-root)")
        task_dir = self.data_root / self.task_folder(organ)
        if not task_dir.is_dir():
            raise ConfigError(
                f"{self.source}: data_root",
                f"{task_dir} not found; data_root must hold the "
                f"task folders ({', '.join(self.task_folder(o) for o in self.organs)})",
            )
        return task_dir

    def train_config(
        self, organ: str, network: str, run: int, prepared_dir: Path, run_dir: Path, world_size: int = 1
    ) -> TrainConfig:
        """The :class:`~l2s_core.train.config.TrainConfig` of one run (seed = run index).

        Args:
            organ: organ of the run.
            network: network of the run.
            run: run index 0, 1, ...
            prepared_dir: the organ's prepared task folder.
            run_dir: the run's folder.
            world_size: data-parallel processes.

        Raises:
            ConfigError: the settings make an invalid TrainConfig (names the file and key).
        """
        settings = self.train.for_run(organ, network)
        try:
            return TrainConfig(
                prepared_dir=str(prepared_dir),
                run_dir=str(run_dir),
                network=network,
                seed=run,
                world_size=world_size,
                **settings.settings(),
            )
        except ConfigError as exc:
            raise ConfigError(
                f"{self.source}: {self.train.source_key(organ, network, exc.where)}", exc.problem
            ) from None


#: Fields of a section that map an organ or a network to some of the section's own options.
_OVERRIDE_FIELDS = ("per_network", "per_organ")


class _StudyChecker(Checker):
    """The record checker, plus the sections' overrides (``per_network``, ``per_organ``): each
    checked against the section's own options."""

    def dataclass(self, value: Any, cls: type, key: str) -> Any:
        """A section, with its overrides checked against the section's own options."""
        section = super().dataclass(value, cls, key)
        overrides = [f.name for f in dataclasses.fields(cls) if f.name in _OVERRIDE_FIELDS]
        if not overrides:
            return section
        allowed = {name: hint for name, hint in self.file_hints(cls).items() if name not in _OVERRIDE_FIELDS}
        checked = {
            field: {
                name: self.fields(options, allowed, f"{key}.{field}.{name}")
                for name, options in getattr(section, field).items()
            }
            for field in overrides
        }
        return dataclasses.replace(section, **checked)


def _check_study_name(checker: _StudyChecker, name: str) -> None:
    """The study name becomes ``runs/<study>``: it must be one plain folder name inside ``runs/``."""
    if not name or Path(name).name != name or name in (".", "..") or name.startswith("."):
        raise checker.error(
            "study",
            f"{name!r} would place the study folder runs/{name} outside runs/ "
            "or hide it; give a plain folder name such as 'quick'",
        )


def _check_values(checker: _StudyChecker, params: StudyParams) -> None:
    """Range and consistency checks beyond types."""
    positive = {
        "runs": params.runs,
        "max_runs": params.max_runs,
        "gpus_per_run": params.gpus_per_run,
        "phantom.n_cases": params.phantom.n_cases or 1,
        "slurm.timeout_min": params.slurm.timeout_min,
        "slurm.cpus_per_task": params.slurm.cpus_per_task,
        "slurm.mem_gb": params.slurm.mem_gb,
    }
    positive.update(
        {
            f"prepare.per_organ.{organ}.max_cases": options.max_cases
            for organ in params.organs
            if (options := params.prepare.for_organ(organ)).max_cases is not None
        }
    )
    for key, number in positive.items():
        if number < 1:
            raise checker.error(key, f"must be at least 1, got {number}")
    if params.max_runs < params.runs:
        raise checker.error("max_runs", f"{params.max_runs} is fewer than runs ({params.runs})")
    for key, names in (
        ("organs", params.organs),
        ("networks", params.networks),
        ("evaluate.splits", params.evaluate.splits),
    ):
        if not names:
            raise checker.error(key, "must list at least one")
        if len(set(names)) != len(names):
            raise checker.error(key, f"lists a value twice: {list(names)}")
    for organ in params.organs:
        if not _ORGAN_NAME.fullmatch(str(organ)):
            raise checker.error(
                "organs",
                f"{organ!r} is not a plain name (letters, digits, '_' or '-'); it names "
                "the organ's folders, tables and figures",
            )
    for key, organs in (
        ("prepare.per_organ", params.prepare.per_organ),
        ("train.per_organ", params.train.per_organ),
        ("phantom.per_organ", params.phantom.per_organ),
        ("task_folders", params.task_folders),
    ):
        for organ in organs:
            if organ not in params.organs:
                raise checker.error(f"{key}.{organ}", f"not among the study's organs ({', '.join(params.organs)})")
    for organ in params.organs:  # every organ has a phantom or a task folder
        if params.data == "phantom":
            params.phantom_organ(organ)
        else:
            params.task_folder(organ)
    for network in params.train.per_network:
        if network not in params.networks:
            raise checker.error(
                f"train.per_network.{network}", f"not among the study's networks ({', '.join(params.networks)})"
            )
    if params.data == "msd" and params.data_root is None:
        raise checker.error("data_root", "required when data is msd (or pass --data-root)")
    for organ in params.organs:  # TrainConfig's own range checks, e.g. patch sides vs depth
        for network in params.networks:
            params.train_config(organ, network, 0, Path("."), Path("."), world_size=params.gpus_per_run)


def _read_mapping(path: Path) -> dict[str, Any]:
    """The top-level mapping of a YAML parameter file or of a JSON snapshot (format checked)."""
    if path.suffix == ".json":
        try:
            values = read_json(path)
        except (InputDataError, FormatVersionError) as exc:
            raise ConfigError(path, exc.problem) from None
        values.pop("format_version")
        return values
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(path, "parameter file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, f"not valid YAML ({' '.join(str(exc).split())})") from None
    except RecursionError:
        raise ConfigError(path, NESTED_TOO_DEEPLY) from None
    if not isinstance(values, dict):
        raise ConfigError(path, "expected a mapping of keys to values at the top level")
    return values


def load_study_params(
    path: str | Path, root: str | Path = ".", data_root: str | Path | None = None, gpus_per_run: int | None = None
) -> StudyParams:
    """Read and validate a study parameter file (YAML) or a snapshot ``study_params.json``.

    Args:
        path: the parameter file.
        root: study root; a relative ``data_root`` is taken relative to it.
        data_root: replaces the file's ``data_root`` (``l2s run --data-root``).
        gpus_per_run: replaces the file's ``gpus_per_run`` (``l2s run --gpus-per-run``).

    Returns:
        The parameters; ``study`` defaults to the file name without suffix, ``data_root`` is
        absolute.

    Raises:
        ConfigError: unreadable file, unknown key, unknown organ or network, wrong type or
            out-of-range value; the message names the file and the key path.
    """
    path = Path(path)
    values = _read_mapping(path)
    checker = _StudyChecker(str(path))
    values.setdefault("study", path.stem)
    if data_root is not None:
        values["data_root"] = str(data_root)
    if gpus_per_run is not None:
        values["gpus_per_run"] = gpus_per_run
    params = checker.dataclass(values, StudyParams, "")
    _check_study_name(checker, params.study)
    if params.data_root is not None:
        params = dataclasses.replace(params, data_root=(Path(root) / params.data_root).resolve())
    params = dataclasses.replace(params, source=str(path))
    _check_values(checker, params)
    return params
