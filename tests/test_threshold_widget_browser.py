"""The threshold panel as a user sees it: the notebook served by Voila, driven in headless Chromium.

A slider moved with the keyboard changes the table's numbers (to the library's own numbers), and the
save button writes ``thresholds.json`` with the panel's values. Set ``CRYOKIT_WIDGET_SCREENSHOT=PATH``
to keep a screenshot of the rendered panel (``docs/thresholds_widget.png`` is made that way).
Skips only when Chromium, Voila or Playwright is missing.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from cryokit.demo.fixtures import demo_candidates, demo_solution
from cryokit.thresholds import load_thresholds
from cryokit.widgets import ThresholdPanel

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "thresholds.ipynb"

missing = [
    what
    for what, ok in [
        (f"chromium ({CHROMIUM})", os.access(CHROMIUM, os.X_OK)),
        ("voila", importlib.util.find_spec("voila") is not None),
        ("playwright", importlib.util.find_spec("playwright") is not None),
    ]
    if not ok
]
pytestmark = pytest.mark.skipif(
    bool(missing),
    reason=f"browser test needs {', '.join(missing)} "
    "(bash scripts/ci_services.sh installs chromium; pip install -e '.[test]')",
)


def _notebook_writing_to(folder: Path, out_dir: Path) -> Path:
    """A copy of the thresholds notebook whose parameters cell writes into ``out_dir``."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    cell = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    lines = cell.source.splitlines()
    cell.source = "\n".join(f"out_dir = {str(out_dir)!r}" if line.startswith("out_dir =") else line for line in lines)
    path = folder / "thresholds.ipynb"
    nbformat.write(notebook, path)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, server: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"voila exited with {server.returncode}: {server.stdout.read()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"voila did not listen on port {port} within {timeout} s")


@pytest.fixture
def voila_page(tmp_path):
    """(url, folder the notebook writes thresholds.json into); the server is stopped afterwards."""
    out_dir = tmp_path / "out"
    notebook = _notebook_writing_to(tmp_path, out_dir)
    port = _free_port()
    voila = shutil.which("voila", path=str(Path(sys.executable).parent)) or "voila"
    server = subprocess.Popen(
        [
            voila,
            notebook.name,
            "--no-browser",
            f"--port={port}",
            "--Voila.ip=127.0.0.1",
            "--ServerApp.token=",
            "--show_tracebacks=True",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_for_port(port, server)
        yield f"http://127.0.0.1:{port}/", out_dir
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()


def _row(page, name: str) -> dict[str, float]:
    cells = {
        c: float(page.inner_text(f"tr[data-class='{name}'] td.{c}"))
        for c in ("threshold", "precision", "recall", "fbeta")
    }
    return {**cells, "total": float(page.inner_text(".cryokit-total"))}


def test_slider_changes_the_table_and_save_writes_the_panels_thresholds(voila_page):
    from playwright.sync_api import sync_playwright

    url, out_dir = voila_page
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(url, timeout=240_000)  # Voila runs the whole notebook before the page loads
            page.wait_for_selector(".cryokit-threshold-panel .cryokit-total", timeout=120_000)
            page.wait_for_selector(".cryokit-threshold-panel img", timeout=30_000)  # the curves are drawn
            if os.environ.get("CRYOKIT_WIDGET_SCREENSHOT"):
                page.locator(".cryokit-threshold-panel").screenshot(path=os.environ["CRYOKIT_WIDGET_SCREENSHOT"])
            before = _row(page, "apo-ferritin")
            (out_dir / "thresholds.json").unlink()  # written at the optimum when the notebook ran
            page.locator(".cryokit-slider-apo-ferritin .noUi-handle").focus()
            page.keyboard.press("Home")  # threshold 0: keep every apo-ferritin candidate
            page.wait_for_function(
                "document.querySelector(\"tr[data-class='apo-ferritin'] td.threshold\").innerText === '0.0000'",
                timeout=30_000,
            )
            after = _row(page, "apo-ferritin")
            page.click(".cryokit-save")
            page.wait_for_selector(".cryokit-saved", timeout=30_000)
            shown = {
                name: float(page.inner_text(f"tr[data-class='{name}'] td.threshold"))
                for name in load_thresholds(out_dir / "thresholds.json")
            }
        finally:
            browser.close()
    # the page shows the library's numbers: the same panel built here, moved the same way
    panel = ThresholdPanel(demo_candidates(demo_solution(n_runs=3, seed=0), seed=1), demo_solution(n_runs=3, seed=0))
    expected_before = panel.table().set_index("particle_type").loc["apo-ferritin"]
    assert before["fbeta"] == pytest.approx(expected_before["fbeta"], abs=5e-5)
    assert before["total"] == pytest.approx(panel.score(), abs=5e-5)
    panel.set_threshold("apo-ferritin", 0.0)
    expected = panel.table().set_index("particle_type").loc["apo-ferritin"]
    assert after["threshold"] == 0.0 and after != before
    assert after["recall"] == pytest.approx(expected["recall"], abs=5e-5) and after["recall"] >= before["recall"]
    assert after["precision"] == pytest.approx(expected["precision"], abs=5e-5)
    assert after["precision"] < before["precision"]
    assert after["total"] == pytest.approx(panel.score(), abs=5e-5)
    saved = load_thresholds(out_dir / "thresholds.json")
    assert saved == pytest.approx(panel.thresholds, abs=0)  # exactly the panel's values
    assert saved == pytest.approx(shown, abs=5e-5)  # and what the page showed
