"""The explorer as a user sees it: ``explore.ipynb`` in JupyterLab in headless Chromium.

JupyterLab serves a copy of the notebook whose parameters point at a tiny trained study (the
``study_dir`` of ``tests/conftest.py``: a spleen with converged baseline, localiser and organ networks);
Playwright drives Debian's Chromium (``/usr/bin/chromium``, or ``L2S_CHROMIUM``) at 1000 px
width: Run All, then change case and view and press "segment in box", checking after each step
that the figure's pixels and the legend's text changed, and that no control reaches past the
notebook's right edge. Screenshots go to ``L2S_BROWSER_SHOTS`` (default: the test's tmp folder).

Run with ``make test-browser`` (it installs Chromium and Playwright and sets ``L2S_BROWSER_TEST``);
plain ``make test`` skips it.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nbformat
import numpy as np
import pytest
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "explore.ipynb"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
#: JupyterLab user settings: every cell rendered (no windowing), no news or update checks.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
}
VIEWPORT = {"width": 1000, "height": 1400}
#: Seconds allowed for Run All (kernel start, torch import, networks loaded, first figure).
RUN_ALL_TIMEOUT = 120

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not os.environ.get("L2S_BROWSER_TEST"),
        reason="browser test: run `make test-browser` (installs Chromium and Playwright)",
    ),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_notebook(folder: Path, study: Path) -> Path:
    """explore.ipynb with its parameters set for the study (papermill's injected cell), unexecuted."""
    nb = parameterize_notebook(
        load_notebook_node(str(NOTEBOOK)), {"study_dir": str(study), "organ": "spleen", "split": None}
    )
    path = folder / "explore.ipynb"
    nbformat.write(nb, path)
    return path


def _lab_settings(folder: Path) -> Path:
    for name, values in LAB_SETTINGS.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    return folder


@pytest.fixture
def lab(tmp_path: Path, study_dir: Path, l2s_kernel: str) -> Iterator[str]:
    """A JupyterLab server on a copy of the notebook; yields the notebook's URL. Its kernels import
    this checkout's ``l2s_core`` (``PYTHONPATH``)."""
    served = tmp_path / "served"
    served.mkdir()
    _write_notebook(served, study_dir)
    port, token = _free_port(), "l2s-browser-test"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "OMP_NUM_THREADS": "1",
        "JUPYTERLAB_SETTINGS_DIR": str(_lab_settings(tmp_path / "lab-settings")),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "lab-workspaces"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt"),
    }
    log_path = tmp_path / "lab.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyter",
                "lab",
                "--no-browser",
                f"--port={port}",
                "--allow-root",
                "--ServerApp.ip=127.0.0.1",
                f"--IdentityProvider.token={token}",
                f"--ServerApp.root_dir={served}",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_for_server(f"{base}/api/status?token={token}", server, log_path)
            yield f"{base}/lab/tree/explore.ipynb?token={token}"
        finally:
            server.terminate()
            server.wait(timeout=30)


def _wait_for_server(url: str, server: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {server.returncode}: {log.read_text()[-500:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"JupyterLab did not answer {url} within {timeout:.0f} s")


def _pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def _changed_share(before: bytes, after: bytes) -> float:
    """Share of pixels that differ between two screenshots (1.0 when their sizes differ)."""
    a, b = _pixels(before), _pixels(after)
    if a.shape != b.shape:
        return 1.0
    return float(np.mean(np.abs(a - b).max(axis=-1) > 16))


#: Right edge of the widest control of the explorer and of the output area holding it (CSS px).
OVERFLOW_JS = """() => {
  const root = document.querySelector('.l2s-legend').closest('.widget-vbox');
  const area = root.closest('.jp-OutputArea-output');
  const controls = '.widget-inline-hbox, .widget-button, .widget-toggle-buttons, .widget-dropdown';
  const rights = [...root.querySelectorAll(controls)]
    .map(e => e.getBoundingClientRect().right);
  return {controls: Math.max(...rights), area: area.getBoundingClientRect().right,
          scroll: area.scrollWidth - area.clientWidth};
}"""


def test_explorer_in_jupyterlab(lab: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    shots = Path(os.environ.get("L2S_BROWSER_SHOTS", tmp_path / "shots"))
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=os.environ.get("L2S_CHROMIUM", "/usr/bin/chromium"), args=CHROMIUM_ARGS
        )
        page = browser.new_page(viewport=VIEWPORT)
        try:
            page.goto(lab)
            page.locator(".jp-Notebook").wait_for(timeout=60_000)
            expect(page.get_by_text("l2s (.venv) | Idle")).to_be_visible(timeout=60_000)  # kernel started
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click()

            legend = page.locator(".l2s-legend")
            legend.wait_for(timeout=RUN_ALL_TIMEOUT * 1000)
            status = page.locator(".widget-html", has_text="spacing (")
            figure = page.locator(".widget-output img")
            expect(figure).to_have_count(1)
            for drawn in (
                "ground truth",
                "two-stage",
                "baseline",
                "GT-localised",
                "label box",
                "two-stage box",
                "manual box",
            ):
                expect(legend).to_contain_text(drawn)
            expect(legend).not_to_contain_text("segmented in box")
            explorer = legend.locator("xpath=ancestor::div[contains(@class, 'widget-vbox')][1]")
            explorer.screenshot(path=shots / "1_opened.png")

            edges = page.evaluate(OVERFLOW_JS)
            assert edges["controls"] <= edges["area"] + 1 and edges["scroll"] <= 0, edges  # wrapped, not cut off

            steps = [
                ("2_case", lambda: page.locator(".widget-dropdown select").select_option(index=1), status),
                ("3_coronal", lambda: page.get_by_role("button", name="coronal", exact=True).click(), None),
                ("4_segment", lambda: page.get_by_role("button", name="segment in box").click(), legend),
            ]
            for name, act, words in steps:
                before_png, before_src = figure.screenshot(), figure.get_attribute("src")
                before_words = words.inner_text() if words is not None else None
                act()
                expect(figure).not_to_have_attribute("src", before_src, timeout=60_000)
                page.wait_for_timeout(300)  # let the new image paint
                after_png = figure.screenshot()
                (shots / f"{name}_figure.png").write_bytes(after_png)
                assert _changed_share(before_png, after_png) > 0.01, f"{name}: the figure did not change"
                if words is not None:
                    expect(words).not_to_have_text(before_words)
            expect(legend).to_contain_text("segmented in box")
            explorer.screenshot(path=shots / "5_segmented.png")
        except Exception:
            page.screenshot(path=shots / "failure.png", full_page=True)
            raise
        finally:
            browser.close()
