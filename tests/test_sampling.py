import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from l2s_core.errors import ConfigError
from l2s_core.sampling import PatchDataset, pad_collate, pad_to_multiple

SMALL_ORGAN = dict(n_cases=2, shape=(8, 40, 40), organ=(3, 20, 20, 5, 22, 22))


def _same_items(a, b):
    return a["case_id"] == b["case_id"] and torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])


def test_patch_items_have_patch_shape_and_dtypes(prepared_task):
    task = prepared_task()
    dataset = PatchDataset(task, task.split["train"], "full", (4, 8, 8), samples_per_epoch=6)
    assert len(dataset) == 6
    for item in dataset:
        assert item["image"].shape == (1, 4, 8, 8) and item["image"].dtype == torch.float32
        assert item["label"].shape == (4, 8, 8) and item["label"].dtype == torch.uint8
        assert item["case_id"] in task.split["train"]
    with pytest.raises(IndexError):
        dataset[6]


def test_patch_is_cut_from_the_cached_volume_at_its_location(prepared_task):
    task = prepared_task(n_cases=2)
    dataset = PatchDataset(task, ["cube_0", "cube_1"], "full", (4, 8, 8), samples_per_epoch=20)
    for i, item in enumerate(dataset):
        case_id, (z0, y0, x0, z1, y1, x1) = dataset.patch_location(i)
        case = task.case(case_id)
        assert case_id == item["case_id"] and (z1 - z0, y1 - y0, x1 - x0) == (4, 8, 8)
        assert min(z0, y0, x0) >= 0 and z1 <= 12 and y1 <= 16 and x1 <= 16  # inside the (12, 16, 16) volume
        assert np.array_equal(item["image"][0].numpy(), case.array("full", "image")[z0:z1, y0:y1, x0:x1])
        assert np.array_equal(item["label"].numpy(), case.array("full", "label")[z0:z1, y0:y1, x0:x1])


def test_foreground_share_follows_the_rule_and_organ_is_not_centred(prepared_task):
    task = prepared_task(**SMALL_ORGAN)
    patch = (4, 8, 8)
    label = np.asarray(task.case("cube_0").array("full", "label"))  # both cases have the same organ
    uniform_hit_rate = np.lib.stride_tricks.sliding_window_view(label, patch).any(axis=(3, 4, 5)).mean()
    assert uniform_hit_rate < 0.1  # so the forced share dominates
    dataset = PatchDataset(
        task,
        task.split["train"] + task.split["val"],
        "full",
        patch,
        samples_per_epoch=1000,
        foreground_probability=0.8,
        seed=3,
    )
    offsets = []
    for item in dataset:
        organ = np.argwhere(item["label"].numpy())
        if len(organ):
            offsets.append(organ.mean(axis=0))
    expected = 0.8 + 0.2 * uniform_hit_rate
    assert abs(len(offsets) / len(dataset) - expected) < 0.05
    offsets = np.array(offsets)
    for axis in (1, 2):  # the organ appears all over the patch in y and x, not at one spot
        assert len(np.unique(offsets[:, axis])) >= 8
        assert offsets[:, axis].std() > 1.5


def test_no_foreground_forcing_gives_uniform_rate(prepared_task):
    task = prepared_task(**SMALL_ORGAN)
    dataset = PatchDataset(task, ["cube_0"], "full", (4, 8, 8), samples_per_epoch=300, foreground_probability=0.0)
    share = np.mean([bool(item["label"].any()) for item in dataset])
    assert share < 0.2


def test_patch_is_clipped_to_a_smaller_volume_and_padded_to_the_multiple(prepared_task):
    task = prepared_task(n_cases=1, shape=(8, 12, 20), organ=(2, 2, 2, 5, 6, 6))
    case = task.case("cube_0")
    dataset = PatchDataset(task, ["cube_0"], "full", (16, 16, 16), samples_per_epoch=20, multiple=8)
    for i, item in enumerate(dataset):
        image, label = item["image"][0].numpy(), item["label"].numpy()
        assert image.shape == label.shape == (8, 16, 16)  # z and y clipped (8, 12 -> 16), x a 16 window of 20
        _, (z0, y0, x0, z1, y1, x1) = dataset.patch_location(i)
        assert (z0, y0, z1, y1) == (0, 0, 8, 12) and x1 - x0 == 16
        assert np.array_equal(image[:8, :12], case.array("full", "image")[:, :, x0:x1])
        assert not image[:, 12:].any() and not label[:, 12:].any()


def test_every_level_gives_patches_of_its_own_arrays(prepared_task):
    task = prepared_task(n_cases=1)
    case = task.case("cube_0")
    assert case.array("lowres", "image").shape == (4, 8, 8) and case.array("crop", "label").shape == (34, 36, 36)
    lowres = PatchDataset(task, ["cube_0"], "lowres", (8, 8, 8), multiple=8)[0]
    assert lowres["image"].shape == (1, 8, 8, 8)
    assert np.array_equal(lowres["image"][0, :4].numpy(), case.array("lowres", "image"))
    crops = PatchDataset(task, ["cube_0"], "crop", (16, 16, 16), samples_per_epoch=50, foreground_probability=1.0)
    assert all(item["label"].shape == (16, 16, 16) and item["label"].any() for item in crops)


def test_one_patch_per_training_image_by_default(prepared_task):
    task = prepared_task(n_cases=5)
    assert len(PatchDataset(task, task.split["train"], "crop", (8, 8, 8))) == len(task.split["train"])
    assert len(PatchDataset(task, task.split["train"], "crop", (8, 8, 8), samples_per_epoch=7)) == 7


def test_one_patch_per_image_epoch_is_a_permutation_of_the_images(prepared_task):
    """With samples_per_epoch None every training image is seen once per epoch, in an order fixed by
    (seed, epoch) alone, so a run resumed at an epoch sees the same order."""
    task = prepared_task(n_cases=12)
    ids = task.split["train"] + task.split["val"] + task.split["test"]
    dataset = PatchDataset(task, ids, "crop", (8, 8, 8), seed=4)
    orders = []
    for epoch in range(4):
        dataset.set_epoch(epoch)
        order = [dataset.patch_location(i)[0] for i in range(len(dataset))]
        assert sorted(order) == sorted(ids)
        orders.append(order)
    assert len({tuple(o) for o in orders}) == 4  # a new permutation each epoch
    resumed = PatchDataset(task, ids, "crop", (8, 8, 8), seed=4)
    resumed.set_epoch(2)
    assert [resumed.patch_location(i)[0] for i in range(len(ids))] == orders[2]
    other = PatchDataset(task, ids, "crop", (8, 8, 8), seed=5)
    assert [other.patch_location(i)[0] for i in range(len(ids))] != orders[0]


def test_explicit_samples_per_epoch_draws_images_with_replacement(prepared_task):
    task = prepared_task(n_cases=5)
    ids = task.split["train"] + task.split["val"] + task.split["test"]
    dataset = PatchDataset(task, ids, "crop", (8, 8, 8), samples_per_epoch=len(ids), seed=4)
    distinct = []
    for epoch in range(20):
        dataset.set_epoch(epoch)
        distinct.append(len({dataset.patch_location(i)[0] for i in range(len(ids))}))
    assert min(distinct) < len(ids)  # some epoch repeats an image


def test_items_depend_only_on_seed_epoch_and_index(prepared_task):
    task = prepared_task()
    ids = task.split["train"]
    first = PatchDataset(task, ids, "full", (4, 8, 8), samples_per_epoch=10, seed=1)
    again = PatchDataset(task, ids, "full", (4, 8, 8), samples_per_epoch=10, seed=1)
    reversed_order = [again[i] for i in reversed(range(10))][::-1]
    assert all(_same_items(first[i], reversed_order[i]) for i in range(10))
    epoch0 = [first[i] for i in range(10)]
    first.set_epoch(1)
    assert not all(_same_items(a, first[i]) for i, a in enumerate(epoch0))
    first.set_epoch(0)
    assert all(_same_items(a, first[i]) for i, a in enumerate(epoch0))
    first[0]  # opens the memory maps, which a pickled copy reopens instead of carrying
    pickled = pickle.dumps(first)
    assert len(pickled) < 4 * 12 * 16 * 16 and _same_items(pickle.loads(pickled)[3], epoch0[3])
    other_seed = PatchDataset(task, ids, "full", (4, 8, 8), samples_per_epoch=10, seed=2)
    assert not all(_same_items(a, other_seed[i]) for i, a in enumerate(epoch0))


def test_worker_processes_and_ranks_draw_the_same_items(prepared_task):
    task = prepared_task()
    dataset = PatchDataset(task, task.split["train"], "full", (4, 8, 8), samples_per_epoch=8, seed=5)
    dataset.set_epoch(2)
    single = list(DataLoader(dataset, batch_size=2, num_workers=0))
    workers = list(DataLoader(dataset, batch_size=2, num_workers=2))
    assert len(single) == len(workers) == 4
    for a, b in zip(single, workers):
        assert a["case_id"] == b["case_id"] and torch.equal(a["image"], b["image"])
        assert torch.equal(a["label"], b["label"])
    ranks = [
        list(DataLoader(dataset, batch_size=1, sampler=DistributedSampler(dataset, 2, r, shuffle=False)))
        for r in range(2)
    ]
    for k, batch in enumerate(single):  # global batch k = rank 0's batch k + rank 1's batch k
        assert torch.equal(torch.cat([ranks[0][k]["image"], ranks[1][k]["image"]]), batch["image"])
        assert torch.equal(torch.cat([ranks[0][k]["label"], ranks[1][k]["label"]]), batch["label"])


def test_bad_sampler_parameters_are_config_errors(prepared_task):
    task = prepared_task(n_cases=1)
    with pytest.raises(ConfigError, match="foreground_probability"):
        PatchDataset(task, ["cube_0"], "full", (4, 8, 8), 4, foreground_probability=1.5)
    with pytest.raises(ConfigError, match="patch_size"):
        PatchDataset(task, ["cube_0"], "full", (4, 8), 4)
    with pytest.raises(ConfigError, match="case_ids"):
        PatchDataset(task, [], "full", (4, 8, 8), 4)
    with pytest.raises(ConfigError, match="level"):
        PatchDataset(task, ["cube_0"], "highres", (4, 8, 8))
    with pytest.raises(ConfigError, match="foreground_probability"):
        PatchDataset(task, ["cube_0"], "lowres", (4, 8, 8), foreground_probability=0.5)


def test_pad_to_multiple():
    array = np.ones((5, 8, 3), np.float32)
    padded = pad_to_multiple(array, 4)
    assert padded.shape == (8, 8, 4) and padded.dtype == np.float32
    assert padded.sum() == array.sum() and np.array_equal(padded[:5, :8, :3], array)
    assert pad_to_multiple(padded, 4) is padded


def test_pad_collate_pads_to_the_largest_item(prepared_task):
    task = prepared_task(n_cases=2, organ=[(3, 4, 4, 7, 10, 10), (3, 4, 4, 5, 6, 13)])
    items = [PatchDataset(task, [case_id], "crop", (64, 64, 64))[0] for case_id in ("cube_0", "cube_1")]
    assert items[0]["label"].shape == (34, 36, 36) and items[1]["label"].shape == (32, 32, 39)
    batch = pad_collate(items)
    assert batch["image"].shape == (2, 1, 34, 36, 39) and batch["label"].shape == (2, 34, 36, 39)
    assert batch["label"].dtype == torch.uint8 and batch["case_id"] == ["cube_0", "cube_1"]
    assert torch.equal(batch["image"][1, :, :32, :32, :39], items[1]["image"])
    assert not batch["image"][1, :, 32:].any() and not batch["label"][0, :, :, 36:].any()
