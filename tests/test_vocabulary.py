"""The vocabulary: the choice lists every module takes its words from."""

from pathlib import Path

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


def test_the_type_checker_sees_the_choices(tmp_path, monkeypatch):
    """Each choice type is a ``Literal`` mypy reads (its tuple derived from it), so a misspelt choice
    in typed code is a type error, not a string that only fails at run time."""
    from mypy import api

    snippet = tmp_path / "uses_vocabulary.py"
    snippet.write_text(
        "from l2s_core.vocabulary import BoxMapping, Network\n"
        'good: Network = "localiser"\n'
        'bad: Network = "localizer"\n'
        'mapping: BoxMapping = "upsample_nearest"\n'
    )
    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # mypy finds l2s_core from the project root
    stdout, _, status = api.run([str(snippet), "--no-incremental", "--follow-imports=silent"])
    assert status == 1
    assert "uses_vocabulary.py:3: error: Incompatible types in assignment" in stdout and "localizer" in stdout
    assert stdout.count("error:") == 1, stdout


def test_every_network_method_and_split_has_its_display_label():
    assert tuple(vocabulary.NETWORK_LABELS) == vocabulary.NETWORKS
    assert tuple(vocabulary.METHOD_LABELS) == vocabulary.METHODS
    assert tuple(vocabulary.SPLIT_LABELS) == vocabulary.SPLIT_NAMES
