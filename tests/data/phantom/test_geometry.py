"""MSD-shaped phantom geometry: case counts, shape and spacing ranges, scaling."""

import nibabel as nib
import numpy as np
import pytest

from l2s_core.data.phantom.anatomy import ORGANS
from l2s_core.data.phantom.geometry import DEFAULT_CASES, MIN_SIDE, MSD_GEOMETRY, case_geometries, case_geometry
from l2s_core.data.phantom.settings import PhantomSettings
from l2s_core.data.phantom.task import generate_phantom_task
from l2s_core.errors import ConfigError


def test_case_counts_are_the_msd_tasks():
    assert {organ: g.cases for organ, g in MSD_GEOMETRY.items()} == {
        "spleen": 41,
        "pancreas": 281,
        "prostate": 32,
        "liver": 131,
        "heart": 20,
    }


@pytest.mark.parametrize("organ", sorted(MSD_GEOMETRY))
def test_full_size_geometry_stays_in_the_task_ranges(organ):
    geometry = MSD_GEOMETRY[organ]
    shapes, spacings = zip(*(case_geometry(organ, np.random.default_rng(i)) for i in range(200)))
    slices = [s[0] for s in shapes]
    assert geometry.slices[0] <= min(slices) and max(slices) <= geometry.slices[1]
    assert {(s[1], s[2]) for s in shapes} <= {(v, v) for v in geometry.inplane_voxels}
    assert all(geometry.slice_mm[0] <= s[0] <= geometry.slice_mm[1] for s in spacings)
    assert all(geometry.inplane_mm[0] <= s[1] == s[2] <= geometry.inplane_mm[1] for s in spacings)
    if geometry.slices[1] > geometry.slices[0]:
        assert len(set(slices)) > 5 and any(z % 3 for z in slices)  # varied, and not all divisible by 3


def test_real_scale_extremes_are_drawn():
    prostate = [case_geometry("prostate", np.random.default_rng(i))[0] for i in range(300)]
    assert max(s[0] for s in prostate) <= 24 and min(s[0] for s in prostate) <= 14  # thinner than a 64-slice patch
    liver = [case_geometry("liver", np.random.default_rng(i))[0] for i in range(300)]
    assert max(s[0] for s in liver) > 500 and all(s[1:] == (512, 512) for s in liver)


def test_scale_keeps_the_field_of_view():
    full_shape, full_spacing = case_geometry("spleen", np.random.default_rng(3))
    shape, spacing = case_geometry("spleen", np.random.default_rng(3), scale=0.25)
    assert all(s >= MIN_SIDE for s in shape)
    assert np.allclose(np.multiply(shape, spacing), np.multiply(full_shape, full_spacing))
    with pytest.raises(ConfigError, match="scale"):
        case_geometry("spleen", np.random.default_rng(0), scale=1.5)
    with pytest.raises(ConfigError, match="no MSD geometry"):
        case_geometry("kidney", np.random.default_rng(0))


def test_fixed_profile_gives_every_case_the_shape_and_no_spacing():
    assert case_geometries("heart", None, (8, 16, 16), 0, "fixed", 1.0) == [((8, 16, 16), None)] * DEFAULT_CASES
    assert case_geometries("heart", 3, (8, 16, 16), 0, "fixed", 1.0) == [((8, 16, 16), None)] * 3


def test_msd_profile_draws_each_case_from_its_own_geometry_stream():
    every = case_geometries("prostate", None, (8, 16, 16), 4, "msd", 0.5)
    assert len(every) == MSD_GEOMETRY["prostate"].cases
    assert case_geometries("prostate", 5, (8, 16, 16), 4, "msd", 0.5) == every[:5]  # a number caps the count
    assert case_geometries("prostate", 10**6, (8, 16, 16), 4, "msd", 0.5) == every
    stream = np.random.default_rng([4, ORGANS.index("prostate"), 2, 1])
    assert every[2] == case_geometry("prostate", stream, 0.5)
    assert case_geometries("prostate", None, (8, 16, 16), 5, "msd", 0.5) != every


def test_msd_profile_writes_varied_cases_with_the_organ(tmp_path):
    task_dir = generate_phantom_task(
        "prostate", tmp_path, settings=PhantomSettings(n_cases=4, profile="msd", scale=0.15), progress=False
    )
    shapes = set()
    for case in sorted((task_dir / "imagesTr").glob("*.nii.gz")):
        image, label = nib.load(case), nib.load(task_dir / "labelsTr" / case.name)
        assert image.shape[3] == 2 and image.shape[:3] == label.shape  # two-channel MRI, (x, y, z) on disk
        assert np.asarray(label.dataobj).any()
        shapes.add(label.shape)
    assert len(list((task_dir / "imagesTr").glob("*.nii.gz"))) == 4 and len(shapes) > 1
    with pytest.raises(ConfigError, match="profile"):
        generate_phantom_task("spleen", tmp_path, settings=PhantomSettings(profile="huge"), progress=False)


PAPER_FOREGROUND_PERCENT = {"spleen": 0.44, "pancreas": 0.22, "prostate": 2.71, "liver": 2.3, "heart": 0.40}


@pytest.mark.parametrize("organ", sorted(PAPER_FOREGROUND_PERCENT))
def test_quick_study_phantoms_have_the_papers_foreground_share(organ):
    """Mean organ share over the quick study's own phantom cases (its scales and case counts),
    within 25 % of the paper's value."""
    from pathlib import Path

    from l2s_core.data.phantom.render import render_case
    from l2s_core.study.params import load_study_params

    quick = load_study_params(Path(__file__).resolve().parents[3] / "papermill_params" / "quick.yaml")
    options = quick.phantom.for_organ(organ)
    geometries = case_geometries(organ, options.n_cases, options.shape, options.seed, options.profile, options.scale)
    shares = [
        100
        * (
            render_case(organ, shape, np.random.default_rng([options.seed, ORGANS.index(organ), i]), spacing)[1] > 0
        ).mean()
        for i, (shape, spacing) in enumerate(geometries)
    ]
    assert np.mean(shares) == pytest.approx(PAPER_FOREGROUND_PERCENT[organ], rel=0.25)


def test_quick_study_case_counts_follow_the_msd_order():
    from pathlib import Path

    from l2s_core.study.params import load_study_params

    quick = load_study_params(Path(__file__).resolve().parents[3] / "papermill_params" / "quick.yaml")
    counts = [quick.phantom.for_organ(organ).n_cases for organ in ("heart", "prostate", "spleen", "liver", "pancreas")]
    assert counts == sorted(set(counts))  # five distinct counts, heart fewest ... pancreas most, as in the MSD
