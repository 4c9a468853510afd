import gzip
import zlib

import nibabel as nib
import numpy as np
import pytest

from l2s_core.data.io import NIFTI_GZIP_LEVEL, VolumeMeta, read_image, read_label, write_mask, write_nifti
from l2s_core.errors import InputDataError


def _save(path, data, affine):
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


@pytest.mark.parametrize(
    "affine",
    [
        np.diag([-2.0, -1.0, 3.0, 1.0]),  # LPS
        np.array([[0, -2.0, 0, 10], [-1.0, 0, 0, 5], [0, 0, 3.0, 1], [0, 0, 0, 1]]),  # axes permuted and flipped
        np.diag([1.0, 1.0, 1.0, 1.0]),  # RAS already
    ],
)
def test_write_mask_lands_on_source_grid(tmp_path, affine):
    data = np.random.default_rng(0).random((5, 6, 7)).astype(np.float32)
    src = _save(tmp_path / "src.nii.gz", data, affine)
    image, meta = read_image(src)
    assert image.dtype == np.float32 and image.ndim == 3
    write_mask(image > 0.5, meta, tmp_path / "mask.nii.gz")
    out = nib.load(tmp_path / "mask.nii.gz")
    assert out.shape == data.shape
    assert np.allclose(out.affine, affine)
    assert np.array_equal(np.asarray(out.dataobj), (data > 0.5).astype(np.uint8))


def test_arrays_are_ras_zyx(tmp_path):
    data = np.zeros((4, 5, 6), np.float32)
    data[0, 0, 0] = 1  # stored voxel (i=0, j=0, k=0); with LPS affine this is the most right/anterior... x flipped
    src = _save(tmp_path / "lps.nii.gz", data, np.diag([-2.0, -1.0, 3.0, 1.0]))
    image, meta = read_image(src)
    assert image.shape == (6, 5, 4)  # (z, y, x)
    # i and j are flipped by RAS reorientation, k kept: the voxel moves to x = 3, y = 4, z = 0.
    assert image[0, 4, 3] == 1
    assert meta.spacing == (3.0, 1.0, 2.0)
    assert VolumeMeta.from_dict(meta.to_dict()) == meta


def test_real_ct_round_trip(real_ct, tmp_path):
    image, meta = read_image(real_ct / "example_ct_sm.nii.gz")
    label, _ = read_label(real_ct / "example_seg.nii.gz")
    assert image.shape == (30, 101, 122) and label.dtype == np.uint8
    assert meta.spacing == pytest.approx((3.0, 3.0, 3.0))
    write_mask(label == 1, meta, tmp_path / "spleen.nii.gz")
    source = np.asarray(nib.load(real_ct / "example_seg.nii.gz").dataobj)
    assert np.array_equal(np.asarray(nib.load(tmp_path / "spleen.nii.gz").dataobj), (source == 1).astype(np.uint8))


def test_four_d_channel(tmp_path):
    data = np.stack([np.full((3, 4, 5), 1.0), np.full((3, 4, 5), 2.0)], axis=-1).astype(np.float32)
    src = _save(tmp_path / "mr.nii.gz", data, np.eye(4))
    assert read_image(src, channel=1)[0].max() == 2.0
    with pytest.raises(InputDataError, match="channel 2 requested, the image has 2 channels"):
        read_image(src, channel=2)


def test_nan_voxels_named(tmp_path):
    data = np.ones((3, 4, 5), np.float32)
    data[1, 1, 1] = np.nan
    src = _save(tmp_path / "nan.nii.gz", data, np.eye(4))
    with pytest.raises(InputDataError, match=r"nan\.nii\.gz: 1 voxels are NaN or infinite"):
        read_image(src)


def test_truncated_gzip(tmp_path):
    src = _save(tmp_path / "full.nii.gz", np.random.default_rng(1).random((20, 20, 20)).astype(np.float32), np.eye(4))
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(InputDataError, match=r"cut\.nii\.gz: .*(truncated|corrupt|readable)"):
        read_image(cut)


def test_not_nifti(tmp_path):
    bad = tmp_path / "junk.nii.gz"
    bad.write_bytes(gzip.compress(b"hello"))
    with pytest.raises(InputDataError, match="junk.nii.gz"):
        read_image(bad)


def test_non_integer_labels(tmp_path):
    src = _save(tmp_path / "lab.nii.gz", np.full((3, 3, 3), 0.5, np.float32), np.eye(4))
    with pytest.raises(InputDataError, match="non-integer"):
        read_label(src)


def test_mask_shape_mismatch(tmp_path):
    _, meta = read_image(_save(tmp_path / "s.nii.gz", np.zeros((3, 4, 5), np.float32), np.eye(4)))
    with pytest.raises(ValueError, match="does not fit"):
        write_mask(np.zeros((2, 2, 2), np.uint8), meta, tmp_path / "m.nii.gz")


def test_write_nifti_streams_the_same_bytes_as_one_shot_compression(tmp_path):
    affine = np.array([[0, -2.0, 0, 10], [-1.0, 0, 0, 5], [0, 0, 3.0, 1], [0, 0, 0, 1]])
    data = np.random.default_rng(2).integers(-1000, 1000, (40, 30, 20, 2)).astype(np.int16)
    view = data.transpose(1, 0, 2, 3)  # not contiguous: written without a whole-volume copy
    write_nifti(tmp_path / "a.nii.gz", view, affine, xyzt_units=("mm", "sec"))
    write_nifti(tmp_path / "b.nii", view, affine, xyzt_units=("mm", "sec"))
    raw = (tmp_path / "b.nii").read_bytes()
    expected = nib.Nifti1Image(np.ascontiguousarray(view), affine)
    expected.header.set_xyzt_units("mm", "sec")
    expected.set_qform(affine, code=1)
    expected.set_sform(affine, code=1)
    assert raw == expected.to_bytes()
    # level 1, zero timestamp: equal arrays give equal files
    assert (tmp_path / "a.nii.gz").read_bytes() == zlib.compress(raw, NIFTI_GZIP_LEVEL, wbits=31)
    assert gzip.decompress((tmp_path / "a.nii.gz").read_bytes()) == raw
    out = nib.load(tmp_path / "a.nii.gz")
    assert out.get_data_dtype() == np.int16 and np.array_equal(np.asarray(out.dataobj), view)
    assert out.header.get_xyzt_units() == ("mm", "sec") and np.allclose(out.affine, affine)


def test_write_nifti_casts_to_the_dtype_asked(tmp_path):
    mask = np.zeros((4, 5, 6), bool)
    mask[1:3, 2:4, 3:5] = True
    write_nifti(tmp_path / "m.nii.gz", mask[:, ::-1], np.eye(4), np.uint8)
    write_nifti(tmp_path / "f.nii.gz", mask.astype(np.float64), np.eye(4), np.float32)
    out = nib.load(tmp_path / "m.nii.gz")
    assert out.get_data_dtype() == np.uint8 and np.array_equal(np.asarray(out.dataobj), mask[:, ::-1])
    assert nib.load(tmp_path / "f.nii.gz").get_data_dtype() == np.float32


def _header_claiming(shape, dtype, payload: bytes = b"") -> bytes:
    """The bytes of a ``.nii`` file whose header claims ``shape`` and ``dtype`` (nothing is
    allocated), followed by ``payload`` instead of the image data."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header.set_qform(np.eye(4), code=1)
    header.set_sform(np.eye(4), code=1)
    header["vox_offset"] = 352
    return header.binaryblock + b"\0" * 4 + payload


@pytest.mark.parametrize(
    "shape, dtype, payload, problem",
    [
        ((1290, 1290, 1290), np.float64, b"", "the header needs 17173512352 bytes"),  # 80 bytes compressed: 17 GB
        ((256, 256, 256), np.float32, bytes(4 << 20), "holds at most"),  # a gzip of zeros, 1/16 of the claim
        ((128, 128, 64), np.float32, np.random.default_rng(0).bytes(1 << 20), "holds at most 1048928"),  # trailer
    ],
)
def test_gzip_that_cannot_hold_what_its_header_claims_is_refused_from_the_header(
    tmp_path, shape, dtype, payload, problem
):
    """A few bytes of gzip claiming gigabytes used to be allocated (13 GB in two minutes) before the
    read failed; the file's size and its gzip trailer bound what it can hold."""
    from l2s_core.data.io import read_shape

    path = tmp_path / "liar.nii.gz"
    path.write_bytes(gzip.compress(_header_claiming(shape, dtype, payload), compresslevel=1))
    with pytest.raises(InputDataError, match=problem):
        read_shape(path)  # the header alone: refused before any voxel is read


def test_image_larger_than_the_available_memory_is_refused_before_reading(tmp_path, monkeypatch):
    import l2s_core.processes

    _save(tmp_path / "a.nii.gz", np.zeros((20, 16, 12), np.int16), np.eye(4))
    monkeypatch.setattr(l2s_core.processes, "available_memory", lambda: 20 * 16 * 12 * 5)  # < 2 + 4 bytes a voxel
    with pytest.raises(InputDataError, match=r"a.nii.gz: reading the \(20, 16, 12\) int16 volume needs .* GiB"):
        read_image(tmp_path / "a.nii.gz")
    monkeypatch.setattr(l2s_core.processes, "available_memory", lambda: 20 * 16 * 12 * 6)
    assert read_image(tmp_path / "a.nii.gz")[0].shape == (12, 16, 20)
