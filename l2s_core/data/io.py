"""Reading and writing NIfTI volumes as ``(z, y, x)`` arrays in RAS orientation.

Images are read with nibabel, reoriented to RAS (so array axis 0 runs inferior→superior,
axis 1 posterior→anterior, axis 2 left→right) and returned as ``(z, y, x)`` float32 arrays;
labels as uint8. :class:`VolumeMeta` keeps what is needed to put a mask back on the exact
voxel grid, shape and orientation of the source file (:func:`write_mask`). Every NIfTI file
l2s writes goes through :func:`write_nifti`.

Example:
    >>> image, meta = read_image("imagesTr/spleen_1.nii.gz")  # doctest: +SKIP
    >>> write_mask(image > 0, meta, "mask.nii.gz")  # doctest: +SKIP
"""

from __future__ import annotations

__all__ = [
    "MAX_VOXELS",
    "NIFTI_GZIP_LEVEL",
    "VolumeMeta",
    "image_voxels",
    "orient_to_ras",
    "read_image",
    "read_label",
    "read_shape",
    "to_source_grid",
    "write_mask",
    "write_nifti",
]

import gzip
import io
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import nibabel as nib
import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

from l2s_core.errors import InputDataError
from l2s_core.files import atomic_open
from l2s_core.processes import require_memory
from l2s_core.records import Record

_RAS = axcodes2ornt(("R", "A", "S"))
#: Larger volumes are taken for a corrupt header (2**31 voxels = 8 GiB as float32).
MAX_VOXELS = 2**31
#: Deflate's largest compression ratio (about 1032:1, for long runs of one byte): a gzip file
#: decompresses to at most this many times its size.
MAX_DEFLATE_RATIO = 1032
#: gzip level of the ``.nii.gz`` files l2s writes: level 9 took about ten times as long
#: (≈12 s per 21 MB) for files a few per cent smaller.
NIFTI_GZIP_LEVEL = 1


@dataclass(frozen=True)
class VolumeMeta(Record):
    """Where a ``(z, y, x)`` RAS array came from.

    Attributes:
        path: the source file.
        source_affine: 4×4 voxel-to-world affine of the file as stored.
        source_shape: spatial shape of the file as stored, nibabel order (i, j, k).
        affine: 4×4 affine of the RAS array in nibabel (x, y, z) axis order.
        spacing: voxel size in mm, ``(z, y, x)``.
    """

    path: str
    source_affine: tuple[tuple[float, ...], ...]
    source_shape: tuple[int, int, int]
    affine: tuple[tuple[float, ...], ...]
    spacing: tuple[float, float, float]


def _load(path: Path) -> nib.Nifti1Image:
    if not path.is_file():
        raise InputDataError(path, "file not found")
    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises many types for bad headers
        raise InputDataError(path, f"not a readable NIfTI file ({type(exc).__name__}: {exc})") from None
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputDataError(path, f"expected a NIfTI image, found {type(img).__name__}")
    if img.ndim not in (3, 4):
        raise InputDataError(path, f"expected a 3D or 4D image, found {img.ndim}D with shape {img.shape}")
    if not np.all(np.isfinite(img.affine)) or abs(np.linalg.det(img.affine[:3, :3])) < 1e-12:
        raise InputDataError(path, "the header's affine is singular or not finite")
    n_voxels = int(np.prod(img.shape, dtype=np.int64))
    if min(img.shape) <= 0 or n_voxels > MAX_VOXELS:
        raise InputDataError(path, f"the header claims an implausible shape {img.shape}")
    _check_data_bytes(img, path, n_voxels)
    return img


def _gzip_payload_bound(path: Path) -> int:
    """The most bytes the gzip file ``path`` can decompress to: at most :data:`MAX_DEFLATE_RATIO`
    times its size, and congruent to its trailer's size field (ISIZE, the payload modulo 2**32)."""
    size = path.stat().st_size
    bound = size * MAX_DEFLATE_RATIO
    with open(path, "rb") as handle:
        handle.seek(max(0, size - 4))
        trailer = int.from_bytes(handle.read(4), "little")
    if bound < trailer:
        return trailer  # a file too short to hold its trailer's payload: the read names the damage
    return trailer + (bound - trailer) // 2**32 * 2**32


def _check_data_bytes(img: nib.Nifti1Image, path: Path, n_voxels: int) -> None:
    """Refuse a header whose image data the file cannot hold, or whose one-channel read (the
    stored or scaled array, then its float32 copy) the available memory cannot hold, before
    anything is allocated.

    Raises:
        InputDataError: the file is too short, or the read would exceed the available memory.
    """
    dtype = img.get_data_dtype()
    needed = int(img.dataobj.offset) + n_voxels * dtype.itemsize  # type: ignore[attr-defined]
    if path.name.endswith(".gz"):
        payload = _gzip_payload_bound(path)
        if payload < needed:
            raise InputDataError(
                path,
                f"truncated or not what its header claims: the header needs {needed} bytes of NIfTI data, "
                f"this {path.stat().st_size}-byte gzip file holds at most {payload} (its size and trailer)",
            )
    elif path.stat().st_size < needed:
        raise InputDataError(path, f"truncated: {path.stat().st_size} bytes, the header needs {needed}")
    slope, inter = img.dataobj.slope, img.dataobj.inter  # type: ignore[attr-defined]
    scaled = not (np.all(slope == 1) and np.all(inter == 0))
    voxels_3d = int(np.prod(img.shape[:3], dtype=np.int64))
    read_bytes = voxels_3d * (max(dtype.itemsize, 8 if scaled else 0) + np.dtype(np.float32).itemsize)
    require_memory(path, read_bytes, f"reading the {img.shape[:3]} {dtype} volume", InputDataError)


def _read_array(img: nib.Nifti1Image, path: Path, channel: int) -> np.ndarray:
    if img.ndim == 4:
        n_channels = img.shape[3]
        if not 0 <= channel < n_channels:
            raise InputDataError(path, f"channel {channel} requested, the image has {n_channels} channels")
    elif channel != 0:
        raise InputDataError(path, f"channel {channel} requested from a single-channel 3D image")
    try:  # slicing a channel out of a 4D image reads the data too
        return np.asarray(img.dataobj[..., channel] if img.ndim == 4 else img.dataobj)
    except (EOFError, OSError, zlib.error, gzip.BadGzipFile, ValueError, OverflowError, MemoryError) as exc:
        raise InputDataError(path, f"truncated or corrupt image data ({type(exc).__name__}: {exc})") from None


def orient_to_ras(
    data: np.ndarray, affine: np.ndarray, path: str | Path, dtype: type | None = None
) -> tuple[np.ndarray, VolumeMeta]:
    """An array on a source voxel grid as a RAS ``(z, y, x)`` array and its :class:`VolumeMeta`.

    Args:
        data: 3D array in the source's (i, j, k) voxel order (nibabel's order).
        affine: 4×4 voxel-to-RAS-world affine of the source grid.
        path: the source, recorded in the meta (a file, or e.g. a DICOM series folder).
        dtype: the returned array's dtype, cast while copying (one copy in all); ``None``
            keeps ``data``'s dtype.

    Returns:
        ``(array, meta)`` as :func:`read_image` returns them: a contiguous array.
    """
    affine = np.asarray(affine, dtype=np.float64)
    source_ornt = io_orientation(affine)
    transform = ornt_transform(source_ornt, _RAS)
    shape3 = tuple(int(s) for s in data.shape[:3])
    ras = apply_orientation(data, transform)
    ras_affine = affine @ inv_ornt_aff(transform, shape3)
    spacing_xyz = np.sqrt((ras_affine[:3, :3] ** 2).sum(axis=0))
    meta = VolumeMeta(
        path=str(path),
        source_affine=tuple(tuple(float(x) for x in row) for row in affine),
        source_shape=shape3,  # type: ignore[arg-type]
        affine=tuple(tuple(float(x) for x in row) for row in ras_affine),
        spacing=tuple(float(s) for s in spacing_xyz[::-1]),  # type: ignore[arg-type]
    )
    return np.ascontiguousarray(ras.transpose(2, 1, 0), dtype=dtype), meta


def image_voxels(path: str | Path) -> int:
    """Voxels of one ``(z, y, x)`` volume (one channel) of a NIfTI image, from its header alone.

    Raises:
        InputDataError: missing file or unreadable header.
    """
    return int(np.prod(read_shape(path), dtype=np.int64))


def read_shape(path: str | Path) -> tuple[int, int, int]:
    """The RAS ``(z, y, x)`` shape :func:`read_image` would give, read from the header only.

    Raises:
        InputDataError: the file is missing or its header unusable.
    """
    img = _load(Path(path))
    ras_xyz = [0, 0, 0]
    for axis, (target, _) in enumerate(io_orientation(img.affine)):
        ras_xyz[int(target)] = int(img.shape[axis])
    return ras_xyz[2], ras_xyz[1], ras_xyz[0]


def read_image(path: str | Path, channel: int = 0) -> tuple[np.ndarray, VolumeMeta]:
    """Read a 3D image, or one channel of a 4D multi-channel image, as RAS ``(z, y, x)`` float32.

    Args:
        path: a ``.nii`` or ``.nii.gz`` file.
        channel: the channel of a 4D image (MSD prostate: 0 = T2, 1 = ADC).

    Returns:
        ``(array, meta)``: the float32 array of shape ``(z, y, x)`` and its :class:`VolumeMeta`.

    Raises:
        InputDataError: missing, unreadable or truncated file, bad channel, NaN/Inf voxels.
    """
    path = Path(path)
    img = _load(path)
    image, meta = orient_to_ras(_read_array(img, path, channel), img.affine, path, np.float32)
    if not np.all(np.isfinite(image)):
        bad = int(np.size(image) - np.count_nonzero(np.isfinite(image)))
        raise InputDataError(path, f"{bad} voxels are NaN or infinite")
    return image, meta


def read_label(path: str | Path) -> tuple[np.ndarray, VolumeMeta]:
    """Read a label map as RAS ``(z, y, x)`` uint8.

    Raises:
        InputDataError: missing or corrupt file, a 4D label, non-integer, negative or
            too large (> 255) values.
    """
    path = Path(path)
    img = _load(path)
    if img.ndim != 3:
        raise InputDataError(path, f"a label map must be 3D, found shape {img.shape}")
    data = _read_array(img, path, 0)
    if not np.all(np.isfinite(data)):
        raise InputDataError(path, "label map contains NaN or infinite values")
    if data.dtype.kind == "f" and not np.array_equal(data, np.round(data)):
        raise InputDataError(path, "label map holds non-integer values; expected integer class labels")
    if data.size and (data.min() < 0 or data.max() > 255):
        raise InputDataError(path, f"label values must lie in 0..255, found {data.min()}..{data.max()}")
    return orient_to_ras(data, img.affine, path, np.uint8)


def to_source_grid(array: np.ndarray, meta: VolumeMeta) -> np.ndarray:
    """A RAS ``(z, y, x)`` array put back into the axis order and orientation of its source grid.

    Inverse of the reorientation in :func:`read_image` / :func:`orient_to_ras`.

    Args:
        array: array of shape ``(z, y, x)`` as returned alongside ``meta``.
        meta: metadata of the source.

    Returns:
        The array in the source's (i, j, k) voxel order, of shape ``meta.source_shape``.

    Raises:
        ValueError: the array's shape does not match the source's.
    """
    transform = ornt_transform(_RAS, io_orientation(np.asarray(meta.source_affine, dtype=np.float64)))
    source_data = apply_orientation(np.asarray(array).transpose(2, 1, 0), transform)
    if tuple(source_data.shape) != tuple(meta.source_shape):
        raise ValueError(
            f"array of shape (z, y, x) {array.shape} (RAS x, y, z {tuple(array.shape[::-1])}) does not "
            f"fit the source grid {tuple(meta.source_shape)} of {meta.path}"
        )
    return source_data


def write_nifti(
    path: str | Path,
    data: np.ndarray,
    affine: np.ndarray,
    dtype: type | np.dtype | None = None,
    xyzt_units: tuple[str, str] | None = None,
) -> None:
    """Write an array on its own voxel grid as a NIfTI-1 file, atomically.

    The array is streamed into the file slice by slice (no whole-volume byte copy, and no
    copy at all when ``data`` already has ``dtype``). A ``.gz`` path is gzipped at
    :data:`NIFTI_GZIP_LEVEL` with a zero timestamp, so equal arrays give byte-identical files.

    Args:
        path: output ``.nii.gz`` (or uncompressed ``.nii``) path.
        data: 3D or 4D array in nibabel's ``(i, j, k[, c])`` voxel order; any memory layout.
        affine: 4×4 voxel-to-world affine, stored as sform with code 1 (scanner), and as qform
            with code 1 unless it is sheared (qform code 0).
        dtype: the stored dtype (``None``: ``data``'s own).
        xyzt_units: spatial and time units for the header (e.g. ``("mm", "sec")``);
            ``None`` leaves them unset.
    """
    array = np.asarray(data)
    if dtype is not None and array.dtype != np.dtype(dtype):
        # a bool mask is already 0/1 bytes: reinterpret instead of copying
        cast_bool = array.dtype == np.bool_ and np.dtype(dtype) == np.uint8
        array = array.view(np.uint8) if cast_bool else array.astype(dtype)
    image = nib.Nifti1Image(array, affine)
    image.header.set_data_dtype(array.dtype)
    if xyzt_units is not None:
        image.header.set_xyzt_units(*xyzt_units)
    image.set_sform(affine, code=1)
    # a qform holds rotations and zooms only: a sheared affine (a gantry-tilted series) gets qform
    # code 0, so that no reader meets a qform that disagrees with the sform
    columns = np.asarray(affine, dtype=np.float64)[:3, :3]
    gram = columns.T @ columns
    rigid = np.allclose(gram, np.diag(np.diag(gram)), atol=1e-6 * float(np.max(np.abs(gram))))
    image.set_qform(affine if rigid else None, code=1 if rigid else 0)
    with atomic_open(path) as handle:
        if str(path).endswith(".gz"):
            stream = _GzipWriter(handle, NIFTI_GZIP_LEVEL)
            image.to_stream(stream)
            stream.finish()
        else:
            image.to_stream(handle)  # type: ignore[arg-type]


class _GzipWriter(io.RawIOBase):
    """A write-only stream that gzips what it is given into ``sink`` as it arrives.

    zlib writes the gzip header (zero timestamp), so the output equals
    ``zlib.compress(everything, level, wbits=31)`` — and ``gzip.compress(..., mtime=0)``,
    which is that on Python 3.11 — however the writes are split. ``tell`` counts the bytes
    taken; ``seek`` only to where the stream is (nibabel then pads up to the data offset with zeros).
    """

    def __init__(self, sink: BinaryIO, level: int) -> None:
        super().__init__()
        self._sink = sink
        self._deflate = zlib.compressobj(level, zlib.DEFLATED, 31)
        self._taken = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self._sink.write(self._deflate.compress(view))
        self._taken += view.nbytes
        return view.nbytes

    def tell(self) -> int:
        return self._taken

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if (offset, whence) not in ((self._taken, io.SEEK_SET), (0, io.SEEK_CUR)):
            raise io.UnsupportedOperation("a gzip stream being written only seeks to where it is")
        return self._taken

    def finish(self) -> None:
        """Write the end of the deflate stream and the gzip trailer."""
        self._sink.write(self._deflate.flush())


def write_mask(mask: np.ndarray, meta: VolumeMeta, path: str | Path) -> None:
    """Write a ``(z, y, x)`` RAS mask on the exact voxel grid of the file ``meta`` came from.

    The mask is put back into the source's axis order and orientation and saved with the
    source affine (:func:`write_nifti`), so it overlays the source scan in any viewer.
    Written atomically.

    Args:
        mask: array of shape ``(z, y, x)`` as returned alongside ``meta``; saved as uint8.
        meta: metadata of the source image or label.
        path: output ``.nii.gz`` path.

    Raises:
        ValueError: the mask's shape does not match the source's.
    """
    try:
        source_data = to_source_grid(mask, meta)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    write_nifti(path, source_data, np.asarray(meta.source_affine, dtype=np.float64), np.uint8)
