import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from l2s_core.errors import ConfigError
from l2s_core.sampling import BaselinePatchDataset, WholeImageDataset, pad_collate, pad_to_multiple

SMALL_ORGAN = dict(n_cases=2, shape=(8, 40, 40), organ=(3, 20, 20, 5, 22, 22))


def _same_items(a, b):
    return (a["case_id"] == b["case_id"] and torch.equal(a["image"], b["image"])
            and torch.equal(a["label"], b["label"]))


def test_patch_items_have_patch_shape_and_dtypes(prepared_task):
    task = prepared_task()
    dataset = BaselinePatchDataset(task, task.split["train"], (4, 8, 8), samples_per_epoch=6)
    assert len(dataset) == 6
    for item in dataset:
        assert item["image"].shape == (1, 4, 8, 8) and item["image"].dtype == torch.float32
        assert item["label"].shape == (4, 8, 8) and item["label"].dtype == torch.int64
        assert item["case_id"] in task.split["train"]
    with pytest.raises(IndexError):
        dataset[6]


def test_patch_is_cut_from_the_cached_volume_at_its_location(prepared_task):
    task = prepared_task(n_cases=2)
    dataset = BaselinePatchDataset(task, ["cube_0", "cube_1"], (4, 8, 8), samples_per_epoch=20)
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
    dataset = BaselinePatchDataset(task, task.split["train"] + task.split["val"], patch, samples_per_epoch=1000,
                                   foreground_probability=0.8, seed=3)
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
    dataset = BaselinePatchDataset(task, ["cube_0"], (4, 8, 8), samples_per_epoch=300, foreground_probability=0.0)
    share = np.mean([bool(item["label"].any()) for item in dataset])
    assert share < 0.2


def test_volume_smaller_than_patch_is_zero_padded(prepared_task):
    task = prepared_task(n_cases=1, shape=(8, 12, 12), organ=(2, 2, 2, 5, 6, 6))
    case = task.case("cube_0")
    item = BaselinePatchDataset(task, ["cube_0"], (16, 16, 16), samples_per_epoch=1)[0]
    image, label = item["image"][0].numpy(), item["label"].numpy()
    assert image.shape == label.shape == (16, 16, 16)
    assert np.array_equal(image[:8, :12, :12], case.array("full", "image"))
    assert np.array_equal(label[:8, :12, :12], case.array("full", "label"))
    image[:8, :12, :12] = 0
    label[:8, :12, :12] = 0
    assert not image.any() and not label.any()


def test_items_depend_only_on_seed_epoch_and_index(prepared_task):
    task = prepared_task()
    ids = task.split["train"]
    first = BaselinePatchDataset(task, ids, (4, 8, 8), samples_per_epoch=10, seed=1)
    again = BaselinePatchDataset(task, ids, (4, 8, 8), samples_per_epoch=10, seed=1)
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
    other_seed = BaselinePatchDataset(task, ids, (4, 8, 8), samples_per_epoch=10, seed=2)
    assert not all(_same_items(a, other_seed[i]) for i, a in enumerate(epoch0))


def test_worker_processes_and_ranks_draw_the_same_items(prepared_task):
    task = prepared_task()
    dataset = BaselinePatchDataset(task, task.split["train"], (4, 8, 8), samples_per_epoch=8, seed=5)
    dataset.set_epoch(2)
    single = list(DataLoader(dataset, batch_size=2, num_workers=0))
    workers = list(DataLoader(dataset, batch_size=2, num_workers=2))
    assert len(single) == len(workers) == 4
    for a, b in zip(single, workers):
        assert a["case_id"] == b["case_id"] and torch.equal(a["image"], b["image"])
        assert torch.equal(a["label"], b["label"])
    ranks = [list(DataLoader(dataset, batch_size=1, sampler=DistributedSampler(dataset, 2, r, shuffle=False)))
             for r in range(2)]
    for k, batch in enumerate(single):  # global batch k = rank 0's batch k + rank 1's batch k
        assert torch.equal(torch.cat([ranks[0][k]["image"], ranks[1][k]["image"]]), batch["image"])
        assert torch.equal(torch.cat([ranks[0][k]["label"], ranks[1][k]["label"]]), batch["label"])


def test_bad_sampler_parameters_are_config_errors(prepared_task):
    task = prepared_task(n_cases=1)
    with pytest.raises(ConfigError, match="foreground_probability"):
        BaselinePatchDataset(task, ["cube_0"], (4, 8, 8), 4, foreground_probability=1.5)
    with pytest.raises(ConfigError, match="patch_size"):
        BaselinePatchDataset(task, ["cube_0"], (4, 8), 4)
    with pytest.raises(ConfigError, match="case_ids"):
        BaselinePatchDataset(task, [], (4, 8, 8), 4)
    with pytest.raises(ConfigError, match="level"):
        WholeImageDataset(task, ["cube_0"], "highres", 8)


def test_pad_to_multiple():
    array = np.ones((5, 8, 3), np.float32)
    padded = pad_to_multiple(array, 4)
    assert padded.shape == (8, 8, 4) and padded.dtype == np.float32
    assert padded.sum() == array.sum() and np.array_equal(padded[:5, :8, :3], array)
    assert pad_to_multiple(padded, 4) is padded


def test_whole_images_are_padded_to_the_multiple(prepared_task):
    task = prepared_task(n_cases=1)
    case = task.case("cube_0")
    lowres = WholeImageDataset(task, ["cube_0"], "lowres", multiple=8)[0]
    assert case.array("lowres", "image").shape == (4, 8, 8)
    assert lowres["image"].shape == (1, 8, 8, 8) and lowres["label"].shape == (8, 8, 8)
    assert np.array_equal(lowres["image"][0, :4].numpy(), case.array("lowres", "image"))
    assert not lowres["image"][0, 4:].any()
    crop = WholeImageDataset(task, ["cube_0"], "crop", multiple=8)[0]
    assert case.array("crop", "label").shape == (34, 36, 36)
    assert crop["label"].shape == (40, 40, 40) and crop["label"].sum() == case.array("crop", "label").sum()


def test_whole_image_order_is_a_permutation_by_seed_and_epoch(prepared_task):
    task = prepared_task()
    ids = [f"cube_{i}" for i in range(5)]
    dataset = WholeImageDataset(task, ids, "lowres", multiple=4, seed=0)
    orders = []
    for epoch in range(4):
        dataset.set_epoch(epoch)
        orders.append([dataset[i]["case_id"] for i in range(len(dataset))])
        assert sorted(orders[-1]) == ids
    assert len({tuple(o) for o in orders}) > 1
    dataset.set_epoch(0)
    assert [dataset[i]["case_id"] for i in range(5)] == orders[0]
    fixed = WholeImageDataset(task, ids, "lowres", multiple=4, shuffle=False)
    assert [fixed[i]["case_id"] for i in range(5)] == ids


def test_pad_collate_pads_to_the_largest_item(prepared_task):
    task = prepared_task(n_cases=2, organ=[(3, 4, 4, 7, 10, 10), (3, 4, 4, 5, 6, 13)])
    items = list(WholeImageDataset(task, ["cube_0", "cube_1"], "crop", multiple=1, shuffle=False))
    assert items[0]["label"].shape == (34, 36, 36) and items[1]["label"].shape == (32, 32, 39)
    batch = pad_collate(items)
    assert batch["image"].shape == (2, 1, 34, 36, 39) and batch["label"].shape == (2, 34, 36, 39)
    assert batch["label"].dtype == torch.int64 and batch["case_id"] == ["cube_0", "cube_1"]
    assert torch.equal(batch["image"][1, :, :32, :32, :39], items[1]["image"])
    assert not batch["image"][1, :, 32:].any() and not batch["label"][0, :, :, 36:].any()
