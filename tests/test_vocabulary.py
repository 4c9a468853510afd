"""The vocabulary: the choice lists every module takes its words from."""

from l2s_core import vocabulary


def test_every_network_has_a_level_and_every_paper_organ_a_task_folder():
    assert set(vocabulary.LEVEL_OF_NETWORK) == set(vocabulary.NETWORKS)
    assert set(vocabulary.LEVEL_OF_NETWORK.values()) == set(vocabulary.LEVELS)
    assert list(vocabulary.MSD_TASK_FOLDERS) == list(vocabulary.PAPER_ORGANS)
    assert set(vocabulary.SPLITS) < set(vocabulary.SPLIT_NAMES)


def test_choice_lists_are_distinct_words():
    for name in vocabulary.__all__:
        value = getattr(vocabulary, name)
        if isinstance(value, tuple):
            assert len(set(value)) == len(value) and all(isinstance(v, str) for v in value), name
