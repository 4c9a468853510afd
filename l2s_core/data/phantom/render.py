"""One phantom case rendered to arrays: the image ``(C, z, y, x)``, the label ``(z, y, x)`` and its affine.

:func:`render_case` draws a case of a task of :mod:`l2s_core.data.phantom.anatomy` from the
case's random stream: every structure of the anatomy is moved, resized, rotated and deformed at
random and painted in order over the background, the task's target organ last (label 1, its
largest connected component) with its optional inner structure (label 2). Partial-volume blur,
a smooth multiplicative bias field and noise (Gaussian for CT, Rician for MRI) finish the image.

The voxel grid is centred on the field of view. Its ``(z, y, x)`` axes run with +z superior, +y
posterior and +x to the patient's left, the direction of increasing array index along each
axis; the affine of nibabel's ``(x, y, z)`` axes is therefore ``diag(-sx, -sy, sz)`` (LPS-like,
as in many MSD files), with the centre voxel at world 0.

The same random stream gives the same arrays, bit for bit.

Example:
    >>> import numpy as np
    >>> image, label, affine = render_case("heart", (8, 16, 16), np.random.default_rng(0))
    >>> image.shape, label.shape, affine.shape
    ((1, 8, 16, 16), (8, 16, 16), (4, 4))
"""

from __future__ import annotations

__all__ = ["render_case"]

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from l2s_core.boxes import largest_component
from l2s_core.data.phantom.anatomy import Anatomy, Blob, PhantomTask, phantom_task

_WAVES = 5
_BLUR_SIGMA_VOXELS = 0.6


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


def _paint(image: np.ndarray, box: tuple[slice, slice, slice], mask: np.ndarray, intensity: np.ndarray) -> None:
    """Set the voxels of ``mask`` (in ``box`` of the ``(C, z, y, x)`` image) to ``intensity`` per channel."""
    region = image[(slice(None),) + box]
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
    mask = largest_component(mask)
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
        organ: one of :data:`~l2s_core.data.phantom.anatomy.ORGANS`.
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
    task = phantom_task(organ)
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
