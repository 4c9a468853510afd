"""Synthetic phantom tasks in the Medical Segmentation Decathlon (MSD) layout (``l2s phantom``).

Five tasks mimic the MSD tasks of the paper: spleen, pancreas (with tumour) and liver (with
tumour) in abdominal CT, prostate (peripheral and transition zone) in two-channel T2/ADC MRI and
the left atrium in cardiac MRI. Each is written as ``<out>/<TaskNN_Name>/dataset.json``,
``imagesTr/<case>.nii.gz`` and ``labelsTr/<case>.nii.gz``, with a non-RAS (LPS-like) affine and
anisotropic spacing, so that it is read by exactly the same code as a real MSD download.

A case is drawn from an :class:`Anatomy`: a list of smooth randomly deformed ellipsoids
(:class:`Blob`, positions in millimetres from the centre of the field of view) painted in order
over a background. The task's target organ is painted last and labelled 1; an optional inner
structure (tumour, or the prostate's transition zone) is labelled 2 inside it. Structures that
look like the organ (kidneys and liver beside the spleen, bowel beside the pancreas, the other
heart chambers beside the left atrium, seminal vesicles beside the prostate) remain unlabelled,
so that a network seeing the whole image can be fooled far from the organ. Partial-volume blur,
a smooth multiplicative bias field and noise (Gaussian for CT, Rician for MRI) finish the image.

Millimetre coordinates are ``(z, y, x)`` with +z superior, +y posterior and +x to the patient's
left, which is the direction of increasing array index along each axis; the stored affine is
therefore ``diag(-sx, -sy, sz)`` on nibabel's ``(x, y, z)`` axes, as in many MSD files.

Every case has its own random stream ``np.random.default_rng([seed, organ index, case index])``:
the same seed gives byte-identical files, and a rerun into the same folder skips finished cases.

Example:
    >>> folders = generate_phantom_tasks("data/phantom", n_cases=10)  # doctest: +SKIP
    >>> folders["spleen"]  # doctest: +SKIP
    PosixPath('data/phantom/Task09_Spleen')
"""

from __future__ import annotations

__all__ = [
    "Anatomy",
    "Blob",
    "DEFAULT_CASES",
    "GENERATOR_VERSION",
    "Inner",
    "LONG_MM",
    "MIN_SHAPE",
    "ORGANS",
    "PROFILES",
    "PhantomTask",
    "SETTINGS_FILE",
    "TASKS",
    "TASK_FOLDERS",
    "case_geometries",
    "generate_phantom_task",
    "generate_phantom_tasks",
    "render_case",
    "write_phantom_cases",
]

import gzip
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage
from tqdm.auto import tqdm

from l2s_core.data.phantom_geometry import MSD_GEOMETRY, case_geometry
from l2s_core.errors import ConfigError, FormatVersionError, InputDataError
from l2s_core.files import atomic_write_bytes, atomic_write_json, atomic_write_text, read_json
from l2s_core.vocabulary import MSD_TASK_FOLDERS, PAPER_ORGANS

ORGANS = PAPER_ORGANS
TASK_FOLDERS = MSD_TASK_FOLDERS
#: Written with the generator settings into each task folder; bumped when the phantoms change.
GENERATOR_VERSION = 1
SETTINGS_FILE = "phantom.json"
MIN_SHAPE = 8
#: ``fixed``: every volume of one shape; ``msd``: the MSD tasks' case counts, shapes and spacings.
PROFILES = ("fixed", "msd")
DEFAULT_CASES = 10
#: Last element of the seed of a case's geometry stream (its image stream has three elements).
_GEOMETRY_STREAM = 1
#: A cylinder along z is an ellipsoid with this semi-axis (mm), longer than any field of view.
LONG_MM = 1.0e4
_NIFTI = ".nii.gz"
_GZIP_LEVEL = 1
_WAVES = 5
_BLUR_SIGMA_VOXELS = 0.6


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


@dataclass(frozen=True)
class _Grid:
    """Voxel grid of a case: shape ``(z, y, x)`` and spacing in mm, centred on the field of view."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]

    def coordinates(self, axis: int, start: int, stop: int) -> np.ndarray:
        """Millimetre positions of voxels ``start:stop`` along ``axis``."""
        return (np.arange(start, stop) - (self.shape[axis] - 1) / 2.0) * self.spacing[axis]

    def nearest_index(self, axis: int, position_mm: float) -> int:
        """Index of the voxel nearest to ``position_mm`` along ``axis`` (may lie outside the grid)."""
        return int(round(position_mm / self.spacing[axis] + (self.shape[axis] - 1) / 2.0))

    def affine_xyz(self) -> np.ndarray:
        """The 4×4 LPS-like affine of nibabel's ``(x, y, z)`` axes; the centre voxel sits at world 0."""
        sz, sy, sx = self.spacing
        nz, ny, nx = self.shape
        affine = np.diag([-sx, -sy, sz, 1.0])
        affine[:3, 3] = [sx * (nx - 1) / 2.0, sy * (ny - 1) / 2.0, -sz * (nz - 1) / 2.0]
        return affine


@dataclass(frozen=True)
class _Waves:
    """A smooth random function ``f(p) = sum_k a_k cos(2 pi nu_k d_k . p + phi_k)`` with |f| <= 1."""

    directions: np.ndarray  # (K, 3) unit vectors, (z, y, x)
    frequencies: np.ndarray  # (K,) cycles per unit of p
    phases: np.ndarray  # (K,)
    amplitudes: np.ndarray  # (K,), sum of absolute values 1

    @classmethod
    def draw(cls, rng: np.random.Generator, low: float, high: float) -> _Waves:
        """Draw :data:`_WAVES` waves with frequencies uniform in ``[low, high)``."""
        directions = rng.normal(size=(_WAVES, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        amplitudes = rng.uniform(0.5, 1.0, _WAVES)
        return cls(
            directions, rng.uniform(low, high, _WAVES), rng.uniform(0, 2 * np.pi, _WAVES), amplitudes / amplitudes.sum()
        )

    def __call__(self, pz: np.ndarray, py: np.ndarray, px: np.ndarray) -> np.ndarray:
        """Evaluate on broadcastable coordinate arrays; returns their broadcast shape."""
        total = np.zeros(np.broadcast_shapes(pz.shape, py.shape, px.shape), np.float32)
        for d, nu, phi, a in zip(self.directions, self.frequencies, self.phases, self.amplitudes):
            total += a * np.cos(2 * np.pi * nu * (d[0] * pz + d[1] * py + d[2] * px) + phi)
        return total


@dataclass(frozen=True)
class _Shape:
    """One case's realisation of a :class:`Blob` (centre and semi-axes in mm, angle in radians)."""

    centre: np.ndarray
    semi_axes: np.ndarray
    angle: float
    irregularity: float
    waves: _Waves

    @classmethod
    def draw(cls, blob: Blob, anatomy: Anatomy, rng: np.random.Generator, centre: np.ndarray | None = None) -> _Shape:
        """Move, resize, rotate and deform ``blob`` at random; ``centre`` overrides the moved centre."""
        moved = np.asarray(blob.centre_mm, float) + rng.normal(0, anatomy.position_sd_mm, 3)
        semi_axes = np.asarray(blob.semi_axes_mm, float) * np.exp(rng.normal(0, anatomy.size_sd, 3))
        angle = np.deg2rad(blob.angle_deg + rng.normal(0, 8.0))
        waves = _Waves.draw(rng, 0.3, 0.9)
        return cls(moved if centre is None else centre, semi_axes, float(angle), blob.irregularity, waves)

    def mask(self, grid: _Grid) -> tuple[tuple[slice, slice, slice], np.ndarray]:
        """Voxels inside the deformed ellipsoid, within its bounding box on ``grid``.

        The voxel nearest to the centre is always included, so that a structure is never lost
        between voxels on a coarse grid.

        Returns:
            ``(box, mask)``: the bounding box as slices of the ``(z, y, x)`` grid and a boolean
            mask of the box's shape (empty when the structure lies outside the grid).
        """
        reach_yx = self.semi_axes[1:].max() * (1 + self.irregularity)
        reach = np.array([self.semi_axes[0] * (1 + self.irregularity), reach_yx, reach_yx])
        box = []
        for axis in range(3):
            lo = grid.nearest_index(axis, self.centre[axis] - reach[axis]) - 1
            hi = grid.nearest_index(axis, self.centre[axis] + reach[axis]) + 2
            box.append(slice(min(max(lo, 0), grid.shape[axis]), min(max(hi, 0), grid.shape[axis])))
        z, y, x = (grid.coordinates(a, s.start, s.stop) - self.centre[a] for a, s in enumerate(box))
        z, y, x = z[:, None, None], y[None, :, None], x[None, None, :]
        cos, sin = np.cos(self.angle), np.sin(self.angle)
        pz = z / self.semi_axes[0]
        py = (cos * y + sin * x) / self.semi_axes[1]
        px = (cos * x - sin * y) / self.semi_axes[2]
        inside = pz**2 + py**2 + px**2 < (1 + self.irregularity * self.waves(pz, py, px)) ** 2
        nearest = [grid.nearest_index(a, self.centre[a]) - box[a].start for a in range(3)]
        if all(0 <= n < size for n, size in zip(nearest, inside.shape)):
            inside[tuple(nearest)] = True
        return tuple(box), inside  # type: ignore[return-value]


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of a boolean mask (the mask itself when empty)."""
    components, count = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    if count <= 1:
        return mask
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    return components == sizes.argmax()


def _paint(image: np.ndarray, box: tuple[slice, slice, slice], mask: np.ndarray, intensity: np.ndarray) -> None:
    """Set the voxels of ``mask`` (in ``box`` of the ``(C, z, y, x)`` image) to ``intensity`` per channel."""
    region = image[(slice(None), *box)]
    region[:, mask] = intensity[:, None]


def _jittered(blob: Blob, anatomy: Anatomy, gain: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The blob's intensity per channel times the case's ``gain`` per channel and its own variation."""
    values = np.asarray(blob.intensity, np.float32) * gain
    return values * (1 + np.float32(anatomy.intensity_sd) * rng.standard_normal(values.shape, np.float32))


def _organ_labels(
    task: PhantomTask, grid: _Grid, image: np.ndarray, gain: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Paint the target organ (label 1) and its inner structure (label 2) on the ``(C, z, y, x)`` image.

    Returns:
        The ``(z, y, x)`` uint8 label map.
    """
    anatomy = task.anatomy
    blob = dict(anatomy.blobs)[task.target]
    organ = _Shape.draw(blob, anatomy, rng)
    box, mask = organ.mask(grid)
    mask = _largest_component(mask)
    _paint(image, box, mask, _jittered(blob, anatomy, gain, rng))
    label = np.zeros(grid.shape, np.uint8)
    label[box][mask] = 1
    inner = task.inner
    if inner is None or rng.random() >= inner.probability:
        return label
    if inner.random_position:
        eroded = ndimage.binary_erosion(label == 1)
        candidates = np.argwhere(eroded if eroded.any() else label == 1)
        index = candidates[rng.integers(len(candidates))]
        centre = np.array([grid.coordinates(a, i, i + 1)[0] for a, i in enumerate(index)])
    else:
        centre = organ.centre + np.asarray(inner.blob.centre_mm, float)
    inner_box, inner_mask = _Shape.draw(inner.blob, anatomy, rng, centre=centre).mask(grid)
    inner_mask &= label[inner_box] == 1
    _paint(image, inner_box, inner_mask, _jittered(inner.blob, anatomy, gain, rng))
    label[inner_box][inner_mask] = 2
    return label


def _bias_field(anatomy: Anatomy, grid: _Grid, rng: np.random.Generator) -> np.ndarray:
    """A smooth multiplicative field per channel, ``(C, z, y, x)`` float32, equal to 1 where the strength is 0."""
    waves = _Waves.draw(rng, 0.2, 0.6)
    pz, py, px = (grid.coordinates(a, 0, grid.shape[a]) / (anatomy.fov_mm[a] / 2) for a in range(3))
    smooth = waves(pz[:, None, None], py[None, :, None], px[None, None, :])
    strength = np.asarray(anatomy.bias_strength, np.float32)[:, None, None, None]
    return np.exp(strength * smooth[None])


def render_case(
    organ: str, shape: tuple[int, int, int], rng: np.random.Generator, spacing: tuple[float, float, float] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one phantom case.

    Args:
        organ: one of :data:`ORGANS`.
        shape: ``(z, y, x)`` of the volume.
        rng: the case's random stream.
        spacing: ``(z, y, x)`` voxel size in mm; ``None``: the anatomy's field of view divided
            by ``shape``. The field of view is centred on the anatomy either way.

    Returns:
        ``(image, label, affine)``: the image ``(C, z, y, x)`` int16 (HU for CT, positive
        arbitrary units for MRI), the label ``(z, y, x)`` uint8 with MSD values, and the 4×4
        affine of nibabel's ``(x, y, z)`` axes.

    Raises:
        ConfigError: unknown ``organ``.
    """
    task = _task(organ)
    anatomy = task.anatomy
    grid = _Grid(shape, spacing or tuple(f / s for f, s in zip(anatomy.fov_mm, shape)))  # type: ignore[arg-type]
    n_channels = len(anatomy.background)
    image = np.empty((n_channels, *shape), np.float32)
    image[:] = np.asarray(anatomy.background, np.float32)[:, None, None, None]
    gain = 1 + np.float32(anatomy.scan_gain_sd) * rng.standard_normal(n_channels, np.float32)
    for name, blob in anatomy.blobs:
        if name != task.target:
            box, mask = _Shape.draw(blob, anatomy, rng).mask(grid)
            _paint(image, box, mask, _jittered(blob, anatomy, gain, rng))
    label = _organ_labels(task, grid, image, gain, rng)

    image = ndimage.gaussian_filter(image, sigma=(0, *[_BLUR_SIGMA_VOXELS] * 3))
    bias = _bias_field(anatomy, grid, rng)
    noise_sd = np.asarray(anatomy.noise_sd, np.float32)[:, None, None, None]
    noise = noise_sd * rng.standard_normal(image.shape, np.float32)
    if anatomy.is_ct:
        # The bias acts on attenuation (HU + 1000), like beam hardening, not on the HU value.
        image = (image + 1000) * bias - 1000 + noise
        image = np.clip(np.rint(image), -1024, 3071)
    else:
        image *= bias
        image = np.hypot(image + noise, noise_sd * rng.standard_normal(image.shape, np.float32))
        image = np.clip(np.rint(image), 0, np.iinfo(np.int16).max)
    return image.astype(np.int16), label, grid.affine_xyz()


def _task(organ: str) -> PhantomTask:
    """The task of ``organ``; :class:`ConfigError` for an unknown organ."""
    if organ not in TASKS:
        raise ConfigError("organ", f"unknown organ {organ!r}; phantoms exist for {', '.join(ORGANS)}")
    return TASKS[organ]


def _nifti_gz(array_xyz: np.ndarray, affine: np.ndarray) -> bytes:
    """A gzipped NIfTI-1 file as bytes, with a zero gzip timestamp so that equal data give equal files."""
    image = nib.Nifti1Image(array_xyz, affine)
    image.header.set_data_dtype(array_xyz.dtype)
    image.header.set_xyzt_units("mm", "sec")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    return gzip.compress(image.to_bytes(), compresslevel=_GZIP_LEVEL, mtime=0)


def _write_case(task_dir: Path, case_id: str, image: np.ndarray, label: np.ndarray, affine: np.ndarray) -> None:
    """Write ``image`` ``(C, z, y, x)`` and ``label`` ``(z, y, x)`` in nibabel's ``(x, y, z[, C])`` order."""
    image_xyz = image[0].transpose(2, 1, 0) if image.shape[0] == 1 else image.transpose(3, 2, 1, 0)
    atomic_write_bytes(task_dir / "imagesTr" / f"{case_id}{_NIFTI}", _nifti_gz(np.ascontiguousarray(image_xyz), affine))
    atomic_write_bytes(
        task_dir / "labelsTr" / f"{case_id}{_NIFTI}", _nifti_gz(np.ascontiguousarray(label.transpose(2, 1, 0)), affine)
    )


def _dataset_json(organ: str, case_ids: list[str]) -> str:
    """The MSD ``dataset.json`` text of a phantom task."""
    task = TASKS[organ]
    meta = {
        "name": task.name,
        "description": f"l2s synthetic phantom of the MSD {TASK_FOLDERS[organ]} task: generated images, "
        "not patient data",
        "reference": "l2s_core.data.phantom (layout of the Medical Segmentation Decathlon, http://medicaldecathlon.com)",
        "licence": "CC0-1.0 (synthetic data)",
        "release": f"l2s phantom generator {GENERATOR_VERSION}",
        "tensorImageSize": "4D" if len(task.modality) > 1 else "3D",
        "modality": task.modality,
        "labels": task.labels,
        "numTraining": len(case_ids),
        "numTest": 0,
        "training": [{"image": f"./imagesTr/{c}{_NIFTI}", "label": f"./labelsTr/{c}{_NIFTI}"} for c in case_ids],
        "test": [],
    }
    return json.dumps(meta, indent=4) + "\n"


def _claim_folder(task_dir: Path, settings: dict[str, object]) -> None:
    """Record the generator settings in ``task_dir``, or check that they match a previous run.

    Raises:
        ConfigError: the folder holds other data, or a phantom made with other settings.
    """
    settings_path = task_dir / SETTINGS_FILE
    if settings_path.is_file():
        try:
            previous = {k: v for k, v in read_json(settings_path).items() if k != "format_version"}
        except (InputDataError, FormatVersionError) as exc:
            raise ConfigError(
                task_dir, f"unreadable phantom settings ({exc.problem}); delete the folder to regenerate"
            ) from None
        if previous != settings:
            raise ConfigError(
                task_dir,
                f"holds a phantom made with {previous}, not {settings}; "
                "choose another output folder or delete this one",
            )
        return
    if task_dir.exists() and any(task_dir.iterdir()):
        raise ConfigError(
            task_dir, f"exists and is not an l2s phantom folder (no {SETTINGS_FILE}); refusing to write into it"
        )
    atomic_write_json(settings_path, settings)


def _check_arguments(n_cases: int, shape: Sequence[int], seed: int) -> tuple[int, int, int]:
    """Validate the generator arguments; returns ``shape`` as a tuple of ints."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < MIN_SHAPE:
        raise ConfigError("shape", f"{shape} must be three sizes (z, y, x), each at least {MIN_SHAPE}")
    if n_cases < 1:
        raise ConfigError("n_cases", f"{n_cases} must be at least 1")
    if seed < 0:
        raise ConfigError("seed", f"{seed} must be non-negative")
    return shape  # type: ignore[return-value]


def case_geometries(
    organ: str, n_cases: int | None, shape: tuple[int, int, int], seed: int, profile: str, scale: float
) -> list[tuple[tuple[int, int, int], tuple[float, float, float] | None]]:
    """``(shape, spacing)`` of every case: the fixed shape, or the MSD ranges (see :mod:`phantom_geometry`)."""
    if profile == "fixed":
        return [(shape, None)] * (n_cases or DEFAULT_CASES)
    count = MSD_GEOMETRY[organ].cases if n_cases is None else min(n_cases, MSD_GEOMETRY[organ].cases)
    organ_index = ORGANS.index(organ)
    return [
        case_geometry(organ, np.random.default_rng([seed, organ_index, i, _GEOMETRY_STREAM]), scale)
        for i in range(count)
    ]


def generate_phantom_task(
    organ: str,
    out_dir: str | Path,
    n_cases: int | None = None,
    shape: tuple[int, int, int] = (32, 96, 96),
    seed: int = 0,
    progress: bool = True,
    profile: str = "fixed",
    scale: float = 1.0,
) -> Path:
    """Write one phantom task folder in MSD layout.

    Cases already present (image and label) are skipped, so a rerun with the same settings
    resumes; ``dataset.json`` is written last.

    Args:
        organ: one of :data:`ORGANS`.
        out_dir: folder that receives the task folder :data:`TASK_FOLDERS` ``[organ]``.
        n_cases: number of training cases, ids ``<organ>_001`` ...; ``None``: 10 (``fixed``)
            or the MSD task's count (``msd``, where a number caps it).
        shape: ``(z, y, x)`` of every volume of the ``fixed`` profile (the field of view is
            fixed, the spacing follows).
        seed: seed of the random streams.
        progress: show a progress bar over the cases.
        profile: ``fixed`` (every volume of ``shape``) or ``msd`` (the MSD task's case count,
            shapes and spacings, :mod:`l2s_core.data.phantom_geometry`).
        scale: ``msd`` only: factor on every side (the field of view is kept).

    Returns:
        The task folder.

    Raises:
        ConfigError: unknown organ or profile, bad ``n_cases``/``shape``/``seed``/``scale``, or a
            task folder that holds other data or a phantom made with other settings.
    """
    _task(organ)
    if profile not in PROFILES:
        raise ConfigError("profile", f"must be one of {', '.join(PROFILES)}, got {profile!r}")
    shape = _check_arguments(n_cases or DEFAULT_CASES, shape, seed)
    geometries = case_geometries(organ, n_cases, shape, seed, profile, scale)
    task_dir = Path(out_dir) / TASK_FOLDERS[organ]
    settings: dict[str, object] = {
        "generator_version": GENERATOR_VERSION,
        "organ": organ,
        "shape": list(shape),
        "seed": seed,
    }
    if profile != "fixed":
        settings = {
            "generator_version": GENERATOR_VERSION,
            "organ": organ,
            "profile": profile,
            "scale": scale,
            "seed": seed,
        }
    _claim_folder(task_dir, settings)
    write_phantom_cases(organ, task_dir, geometries, seed, progress)
    return task_dir


def write_phantom_cases(
    organ: str,
    task_dir: str | Path,
    geometries: Sequence[tuple[tuple[int, int, int], tuple[float, float, float] | None]],
    seed: int = 0,
    progress: bool = True,
) -> list[str]:
    """Render and write one case per ``(shape, spacing)`` into a task folder, then its ``dataset.json``.

    Cases already present are skipped. :func:`generate_phantom_task` calls this after checking
    the folder; a benchmark can call it with geometries of its own (e.g. a 500×512×512 liver).

    Args:
        organ: one of :data:`ORGANS`.
        task_dir: the task folder (created).
        geometries: ``(z, y, x)`` shape and spacing in mm (``None``: the anatomy's field of view
            divided by the shape) of each case.
        seed: seed of the random streams.
        progress: show a progress bar over the cases.

    Returns:
        The case ids ``<organ>_001`` ...
    """
    task_dir = Path(task_dir)
    organ_index = ORGANS.index(organ)
    case_ids = [f"{organ}_{i + 1:03d}" for i in range(len(geometries))]
    for case_index, case_id in enumerate(tqdm(case_ids, desc=f"phantom {organ}", unit="case", disable=not progress)):
        if all((task_dir / sub / f"{case_id}{_NIFTI}").is_file() for sub in ("imagesTr", "labelsTr")):
            continue
        rng = np.random.default_rng([seed, organ_index, case_index])
        case_shape, spacing = geometries[case_index]
        _write_case(task_dir, case_id, *render_case(organ, case_shape, rng, spacing))
    atomic_write_text(task_dir / "dataset.json", _dataset_json(organ, case_ids))
    return case_ids


def generate_phantom_tasks(
    out_dir: str | Path,
    organs: Sequence[str] = ORGANS,
    n_cases: int | None = None,
    shape: tuple[int, int, int] = (32, 96, 96),
    seed: int = 0,
    progress: bool = True,
    profile: str = "fixed",
    scale: float = 1.0,
) -> dict[str, Path]:
    """Write the phantom task folders of several organs (see :func:`generate_phantom_task`).

    Returns:
        Organ → task folder, in the order of ``organs``.

    Raises:
        ConfigError: an unknown organ (checked before anything is written) or a bad argument.
    """
    for organ in organs:
        _task(organ)
    return {
        organ: generate_phantom_task(organ, out_dir, n_cases, shape, seed, progress, profile, scale)
        for organ in dict.fromkeys(organs)
    }
