"""``predictions.csv`` of an ``l2s predict`` output folder, kept true to the masks in the folder.

One ``l2s predict`` writes into a folder at a time (:func:`output_lock`; a second is refused in
one line), and the table is rewritten atomically after each scan's files are written
(:func:`record_row`), keeping the rows of earlier runs for masks this run did not replace: so
the table lists exactly the masks in the folder, also after a run that was interrupted.
"""

from __future__ import annotations

__all__ = ["LOCK_FILE", "TABLE_FILE", "output_lock", "record_row"]

import contextlib
import io
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from l2s_core.errors import ConfigError, InputDataError
from l2s_core.files import atomic_write_text, exclusive_lock

TABLE_FILE = "predictions.csv"
LOCK_FILE = ".l2s_predict.lock"


@contextlib.contextmanager
def output_lock(out_dir: Path) -> Iterator[None]:
    """Hold the output folder's lock while the block runs.

    Raises:
        ConfigError: another ``l2s predict`` is writing into ``out_dir`` (its pid is named).
    """

    def refusal(holder: dict[str, Any]) -> ConfigError:
        return ConfigError(
            out_dir,
            f"another `l2s predict` (pid {holder.get('pid', '?')} on {holder.get('host', '?')}) is writing "
            "into this folder; wait for it to finish or choose another --out",
        )

    with exclusive_lock(out_dir / LOCK_FILE, refusal):
        yield


def record_row(out_dir: Path, row: Mapping[str, Any], columns: Sequence[str]) -> None:
    """Add one scan's row to ``out_dir/predictions.csv`` (replacing an earlier row of the same
    mask), atomically. Call it under :func:`output_lock`, after the scan's files are written.

    Raises:
        InputDataError: an existing ``predictions.csv`` is not such a table.
    """
    path = out_dir / TABLE_FILE
    table = pd.DataFrame(columns=list(columns))
    if path.is_file():
        try:
            table = pd.read_csv(path, dtype=str, keep_default_na=False)
        except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise InputDataError(path, f"not a predictions table ({type(exc).__name__}: {exc})") from None
        if list(table.columns) != list(columns):
            raise InputDataError(path, f"columns {list(table.columns)}, expected {list(columns)}")
        table = table[table["mask"] != str(row["mask"])]
    new = pd.DataFrame([dict(row)], columns=list(columns))
    table = pd.concat([table, new], ignore_index=True) if len(table) else new
    buffer = io.StringIO()
    table.to_csv(buffer, index=False)
    atomic_write_text(path, buffer.getvalue())
