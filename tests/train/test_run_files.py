"""The run folder's files: the log, the summary and the discovery of finished runs."""

from study_folder import run_summary

from l2s_core.train.run_files import LOG_COLUMNS, finished_runs, finished_summary, read_log, write_log


def test_log_round_trip(tmp_path):
    rows = [{"epoch": 1, "wall_seconds": 2.5, "train_loss": 0.9, "train_dice": 0.1, "val_dice": 0.2}]
    write_log(tmp_path, rows)
    assert read_log(tmp_path) == rows and (tmp_path / "log.csv").read_text().startswith(",".join(LOG_COLUMNS))


def test_finished_runs_in_index_order_and_converged_needs_best_weights(tmp_path):
    network_dir = tmp_path / "organ"
    for index, converged in ((10, True), (2, True), (3, False)):
        run_summary("organ", index, converged).write(network_dir / f"run_{index:02d}" / "summary.json")
    (network_dir / "run_02" / "best.pt").write_bytes(b"weights")
    (network_dir / "run_04").mkdir()  # unfinished: no summary
    (network_dir / "run_x").mkdir()  # not a run folder
    runs = finished_runs(tmp_path, "organ")
    assert [r.index for r in runs] == [2, 3, 10]
    assert [r.converged for r in runs] == [True, False, False]  # run 10 converged but left no best.pt
    assert finished_summary(network_dir / "run_03") == run_summary("organ", 3, False)
    assert finished_summary(network_dir / "run_04") is None and finished_runs(tmp_path, "baseline") == []
