"""Where the study notebooks are, and copying them out of an installed l2s.

The notebooks are the product's entry points (``notebooks/`` at the top of the repository:
``prepare``, ``train``, ``evaluate``, ``analysis``, ``explore``). They ship inside the wheel as the
data package ``l2s_core.notebooks`` (``pyproject.toml`` maps it onto ``notebooks/``), so one lookup
through :mod:`importlib.resources` finds them in an editable install (the repository's folder) and in a
wheel install (``site-packages/l2s_core/notebooks``) alike.

Examples:
    >>> sorted(p.name for p in notebooks_dir().glob("*.ipynb"))[:2]
    ['analysis.ipynb', 'evaluate.ipynb']
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

from l2s_core.errors import ConfigError

__all__ = ["NOTEBOOK_PACKAGE", "copy_notebooks", "notebooks_dir"]

#: The importable name the notebook folder ships under.
NOTEBOOK_PACKAGE = "l2s_core.notebooks"


def notebooks_dir() -> Path:
    """The folder of the study notebooks of this installation.

    Returns:
        An existing folder holding the ``*.ipynb`` study notebooks.

    Raises:
        ConfigError: l2s was installed without its notebooks (a broken install).
    """
    try:
        folder = Path(str(resources.files(NOTEBOOK_PACKAGE)))
    except ModuleNotFoundError:
        raise ConfigError(NOTEBOOK_PACKAGE, "the study notebooks are not installed with l2s_core") from None
    if not folder.is_dir():
        raise ConfigError(folder, "the study notebooks are not installed with l2s_core")
    return folder


def copy_notebooks(destination: Path) -> list[Path]:
    """Copy every study notebook into ``destination`` (created if needed), never overwriting a file.

    Args:
        destination: the folder to copy into, e.g. a user's working folder for JupyterLab.

    Returns:
        The copied notebook paths, sorted by name.

    Raises:
        ConfigError: a notebook of that name is already in ``destination`` (nothing is copied then).
    """
    sources = sorted(notebooks_dir().glob("*.ipynb"))
    existing = [destination / source.name for source in sources if (destination / source.name).exists()]
    if existing:
        raise ConfigError(existing[0], "already exists; nothing copied (remove it or choose another folder)")
    destination.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy2(source, destination / source.name)) for source in sources]
