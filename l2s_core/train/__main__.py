"""The command line ``python -m l2s_core.train CONFIG.json`` (also under ``torchrun``): train one run."""

from __future__ import annotations

__all__ = ["main"]

import argparse
import json
import os
import sys
from pathlib import Path

from l2s_core.errors import L2SError
from l2s_core.train.config import TrainConfig
from l2s_core.train.launch import train_run


def main(argv: list[str] | None = None) -> int:
    """``python -m l2s_core.train CONFIG.json`` (also under ``torchrun``): train one run.

    Prints the summary as one JSON line (rank 0) and returns 0, or prints the error and
    returns 2.
    """
    parser = argparse.ArgumentParser(prog="python -m l2s_core.train", description="Train one l2s network run.")
    parser.add_argument("config", type=Path, help="training config JSON (fields of TrainConfig)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        summary = train_run(TrainConfig.load(args.config), progress=not args.no_progress)
    except L2SError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except MemoryError as exc:
        print(f"error: {args.config}: ran out of memory ({' '.join(str(exc).split())})", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary.to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
