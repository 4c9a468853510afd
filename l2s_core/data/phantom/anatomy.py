"""What the built-in phantoms contain: the anatomy of each kind of scan and of each phantom task.

Five tasks mimic the Medical Segmentation Decathlon (MSD) tasks of the paper: spleen, pancreas
(with tumour) and liver (with tumour) in abdominal CT, prostate (peripheral and transition zone)
in two-channel T2/ADC MRI and the left atrium in cardiac MRI.

A scan is an :class:`Anatomy`: a list of smooth randomly deformed ellipsoids (:class:`Blob`,
positions in millimetres from the centre of the field of view) painted in order over a
background. A :class:`PhantomTask` names the structure that is labelled 1 (its target organ)
and an optional :class:`Inner` structure labelled 2 inside it (tumour, or the prostate's
transition zone). Structures that look like the organ (kidneys and liver beside the spleen,
bowel beside the pancreas, the other heart chambers beside the left atrium, seminal vesicles
beside the prostate) remain unlabelled, so that a network seeing the whole image can be fooled
far from the organ. These are records only; :mod:`l2s_core.data.phantom.render` draws a case
from them.

Millimetre coordinates are ``(z, y, x)`` with +z superior, +y posterior and +x to the patient's
left. Intensities are per image channel: Hounsfield units for CT, positive arbitrary units for
MRI (the prostate's channel 1 is ADC in 1e-6 mm^2/s).

Example:
    >>> phantom_task("prostate").labels
    {'0': 'background', '1': 'PZ', '2': 'TZ'}
"""

from __future__ import annotations

__all__ = ["LONG_MM", "ORGANS", "TASKS", "Anatomy", "Blob", "Inner", "PhantomTask", "phantom_task"]

from dataclasses import dataclass

from l2s_core.errors import ConfigError
from l2s_core.vocabulary import PAPER_ORGANS

#: The organs that have a phantom task, in the order of their random streams.
ORGANS = PAPER_ORGANS
#: A cylinder along z is an ellipsoid with this semi-axis (mm), longer than any field of view.
LONG_MM = 1.0e4


@dataclass(frozen=True)
class Blob:
    """A nominal structure: an ellipsoid, randomly moved, resized and deformed in each case.

    Attributes:
        centre_mm: centre ``(z, y, x)`` in mm from the centre of the field of view.
        semi_axes_mm: semi-axes ``(z, y, x)`` in mm before the rotation.
        intensity: value per image channel (HU for CT).
        angle_deg: rotation in the axial (y, x) plane, degrees.
        irregularity: amplitude of the smooth deformation of the surface, as a fraction of the radius.
    """

    centre_mm: tuple[float, float, float]
    semi_axes_mm: tuple[float, float, float]
    intensity: tuple[float, ...]
    angle_deg: float = 0.0
    irregularity: float = 0.12


def _cylinder(
    y: float, x: float, semi_y: float, semi_x: float, intensity: tuple[float, ...], irregularity: float = 0.03
) -> Blob:
    """A structure running through the whole field of view along z (body, spine, aorta)."""
    return Blob((0.0, y, x), (LONG_MM, semi_y, semi_x), intensity, irregularity=irregularity)


def _pair(
    centre_mm: tuple[float, float, float],
    semi_axes_mm: tuple[float, float, float],
    intensity: tuple[float, ...],
    angle_deg: float = 0.0,
) -> tuple[Blob, Blob]:
    """A left/right symmetric pair of structures (kidneys, lungs, muscles)."""
    z, y, x = centre_mm
    return (Blob((z, y, x), semi_axes_mm, intensity, angle_deg), Blob((z, y, -x), semi_axes_mm, intensity, -angle_deg))


@dataclass(frozen=True)
class Inner:
    """A structure labelled 2 inside the target organ (tumour, prostate transition zone).

    Attributes:
        blob: its shape; ``centre_mm`` is an offset from the organ's centre unless
            ``random_position``.
        probability: chance that a case has it.
        random_position: centre it on a random voxel inside the organ (tumours).
    """

    blob: Blob
    probability: float
    random_position: bool


@dataclass(frozen=True)
class Anatomy:
    """What a kind of scan looks like.

    Attributes:
        fov_mm: physical extent ``(z, y, x)`` of the volume; spacing is ``fov_mm / shape``.
        background: value per channel outside every structure (air for CT).
        blobs: named structures painted in this order.
        noise_sd: noise standard deviation per channel.
        bias_strength: amplitude of the log bias field per channel (0: no bias).
        is_ct: CT (Hounsfield units, Gaussian noise, bias on attenuation) or MRI (Rician noise).
        position_sd_mm: case-to-case standard deviation of structure centres.
        size_sd: case-to-case standard deviation of the log of each semi-axis.
        scan_gain_sd: case-to-case standard deviation of a gain shared by all structures
            (contrast timing, scanner calibration), relative.
        intensity_sd: case-to-case standard deviation of each structure's own intensity, relative.
    """

    fov_mm: tuple[float, float, float]
    background: tuple[float, ...]
    blobs: tuple[tuple[str, Blob], ...]
    noise_sd: tuple[float, ...]
    bias_strength: tuple[float, ...]
    is_ct: bool
    position_sd_mm: float = 7.0
    size_sd: float = 0.08
    scan_gain_sd: float = 0.05
    intensity_sd: float = 0.02


@dataclass(frozen=True)
class PhantomTask:
    """One MSD-like task: the anatomy, which structure is labelled, and the ``dataset.json`` fields."""

    name: str
    modality: dict[str, str]
    labels: dict[str, str]
    anatomy: Anatomy
    target: str
    inner: Inner | None = None


# Abdominal CT, portal venous phase (HU). The liver, spleen and pancreas tasks share it.
_ABDOMEN = Anatomy(
    fov_mm=(240.0, 380.0, 380.0),
    background=(-1000.0,),
    blobs=(
        ("body fat", _cylinder(5, 0, 115, 160, (-100.0,))),
        ("abdominal wall", _cylinder(5, 0, 102, 146, (50.0,))),
        ("abdominal cavity", _cylinder(3, 0, 92, 134, (30.0,), irregularity=0.04)),
        ("paraspinal muscle left", _cylinder(92, 38, 17, 24, (50.0,))),
        ("paraspinal muscle right", _cylinder(92, -38, 17, 24, (50.0,))),
        ("vertebral arch", _cylinder(88, 0, 12, 18, (500.0,))),
        ("spinal canal", _cylinder(86, 0, 7, 8, (20.0,))),
        ("vertebral body", _cylinder(60, 0, 18, 20, (700.0,))),
        ("aorta", _cylinder(32, 15, 11, 11, (160.0,))),
        ("vena cava", _cylinder(30, -24, 12, 14, (110.0,))),
        *zip(("perirenal fat left", "perirenal fat right"), _pair((-45, 55, 70), (62, 38, 40), (-90.0,))),
        *zip(("kidney left", "kidney right"), _pair((-45, 55, 70), (50, 24, 27), (120.0,), angle_deg=25)),
        ("stomach", Blob((45, -35, 55), (45, 35, 50), (35.0,))),
        ("stomach gas", Blob((55, -58, 55), (14, 10, 24), (-900.0,))),
        ("bowel loop 1", Blob((-60, -50, -30), (20, 18, 22), (90.0,))),
        ("bowel loop 2", Blob((-70, -45, 40), (18, 20, 20), (95.0,))),
        ("bowel loop 3", Blob((-20, -55, 0), (16, 16, 24), (85.0,))),
        ("duodenum", Blob((-10, 12, -60), (25, 12, 12), (85.0,))),
        ("liver", Blob((30, 0, -62), (80, 78, 66), (105.0,), angle_deg=10)),
        ("spleen", Blob((35, 35, 85), (39, 40, 26), (110.0,), angle_deg=-30)),
        ("pancreas", Blob((-5, 10, 5), (15, 14, 78), (90.0,), angle_deg=15, irregularity=0.15)),
    ),
    noise_sd=(12.0,),
    bias_strength=(0.015,),
    is_ct=True,
)

# Pelvic MRI inside the body: channel 0 T2-weighted, channel 1 ADC (1e-6 mm^2/s).
_PELVIS = Anatomy(
    fov_mm=(72.0, 170.0, 170.0),
    background=(380.0, 350.0),
    blobs=(
        *zip(("obturator internus left", "obturator internus right"), _pair((0, 5, 68), (60, 45, 14), (90.0, 1400.0))),
        *zip(("pubic bone left", "pubic bone right"), _pair((5, -62, 22), (30, 14, 20), (170.0, 550.0))),
        ("rectal wall", Blob((0, 42, 0), (60, 20, 22), (110.0, 1300.0))),
        ("rectal lumen", Blob((0, 42, 0), (60, 10, 12), (40.0, 800.0))),
        ("bladder", Blob((48, -25, 0), (30, 35, 45), (1000.0, 2900.0))),
        *zip(
            ("seminal vesicle left", "seminal vesicle right"),
            _pair((26, 24, 22), (10, 9, 20), (265.0, 1750.0), angle_deg=20),
        ),
        *zip(("lymph node left", "lymph node right"), _pair((-10, 10, 45), (7, 7, 7), (150.0, 1150.0))),
        *zip(("venous plexus left", "venous plexus right"), _pair((8, -22, 50), (9, 11, 9), (255.0, 1700.0))),
        ("prostate", Blob((-5, -5, 0), (19, 24, 28), (260.0, 1750.0), irregularity=0.1)),
    ),
    noise_sd=(12.0, 60.0),
    bias_strength=(0.12, 0.0),
    is_ct=False,
)

# Cardiac balanced-SSFP MRI (bright blood, dark myocardium and lungs).
_CHEST = Anatomy(
    fov_mm=(130.0, 300.0, 300.0),
    background=(0.0,),
    blobs=(
        ("body fat", _cylinder(5, 0, 112, 148, (220.0,))),
        ("chest wall", _cylinder(5, 0, 100, 136, (70.0,))),
        *zip(("lung left", "lung right"), _pair((10, 10, 78), (70, 78, 58), (15.0,))),
        ("liver dome", Blob((-75, -10, -60), (40, 80, 80), (80.0,))),
        ("spine", _cylinder(82, 0, 18, 20, (140.0,))),
        ("descending aorta", _cylinder(52, 22, 11, 11, (250.0,))),
        ("myocardium", Blob((-10, -30, 15), (50, 50, 58), (60.0,))),
        ("left ventricle", Blob((-20, -35, 38), (32, 22, 22), (250.0,))),
        ("right ventricle", Blob((-20, -58, -5), (30, 17, 30), (250.0,))),
        ("right atrium", Blob((-2, -18, -38), (25, 20, 20), (250.0,))),
        ("ascending aorta", Blob((40, -15, 0), (30, 14, 14), (250.0,))),
        ("pulmonary artery", Blob((45, -35, -15), (20, 13, 13), (250.0,))),
        ("left atrium", Blob((15, 15, 12), (25, 28, 35), (250.0,))),
    ),
    noise_sd=(10.0,),
    bias_strength=(0.15,),
    is_ct=False,
)

#: Organ → its phantom task (the MSD task it mimics).
TASKS: dict[str, PhantomTask] = {
    "spleen": PhantomTask("Spleen", {"0": "CT"}, {"0": "background", "1": "spleen"}, _ABDOMEN, "spleen"),
    "pancreas": PhantomTask(
        "Pancreas",
        {"0": "CT"},
        {"0": "background", "1": "pancreas", "2": "cancer"},
        _ABDOMEN,
        "pancreas",
        Inner(Blob((0, 0, 0), (10, 10, 12), (45.0,)), probability=0.7, random_position=True),
    ),
    "prostate": PhantomTask(
        "Prostate",
        {"0": "T2", "1": "ADC"},
        {"0": "background", "1": "PZ", "2": "TZ"},
        _PELVIS,
        "prostate",
        Inner(
            Blob((4, -6, 0), (15, 17, 22), (140.0, 1150.0), irregularity=0.08), probability=1.0, random_position=False
        ),
    ),
    "liver": PhantomTask(
        "Liver",
        {"0": "CT"},
        {"0": "background", "1": "liver", "2": "cancer"},
        _ABDOMEN,
        "liver",
        Inner(Blob((0, 0, 0), (18, 18, 18), (55.0,)), probability=0.7, random_position=True),
    ),
    "heart": PhantomTask("LeftAtrium", {"0": "MRI"}, {"0": "background", "1": "left atrium"}, _CHEST, "left atrium"),
}


def phantom_task(organ: str) -> PhantomTask:
    """The phantom task of ``organ``.

    Raises:
        ConfigError: ``organ`` has no phantom (not one of :data:`ORGANS`).
    """
    if organ not in TASKS:
        raise ConfigError("organ", f"unknown organ {organ!r}; phantoms exist for {', '.join(ORGANS)}")
    return TASKS[organ]
