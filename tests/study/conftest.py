"""Fixtures of the study tests: the ``l2s`` Jupyter kernel."""

from __future__ import annotations

import subprocess
import sys

import pytest

from l2s_core.study.runner import KERNEL_NAME


@pytest.fixture(scope="session")
def l2s_kernel() -> str:
    """The project's kernel, installed into this environment (``sys.prefix``) when missing."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(KERNEL_NAME)
    except NoSuchKernel:
        subprocess.run([sys.executable, "-m", "ipykernel", "install", "--sys-prefix", "--name", KERNEL_NAME],
                       check=True, capture_output=True)
    return KERNEL_NAME
