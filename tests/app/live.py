"""A live app for browser checks: ``streamlit run app.py`` on a free localhost port, and headless Debian
Chromium driven by playwright. Shared by the browser test, bench/bench_app.py and scripts/screenshots.py.

Never ``playwright install``: the browser is the system's /usr/bin/chromium (the Makefile installs it).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_app(log_path: Path | None = None, timeout_s: float = 60, extra_args: tuple[str, ...] = (),
              script: str = "app.py") -> Iterator[str]:
    """Run the app (or another Streamlit ``script``) headless on localhost; yield its base URL once
    /_stcore/health answers; stop it after.

    ``extra_args``: more ``streamlit run`` options, e.g. ("--client.toolbarMode", "minimal")."""
    port = free_port()
    log_path = log_path or Path(tempfile.mkdtemp(prefix="quantfit-streamlit-")) / "server.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", script, "--server.headless", "true",
             "--server.address", "localhost", "--server.port", str(port),
             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none", *extra_args],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "BROWSER_PATH": CHROMIUM},
        )
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                if proc.poll() is not None:
                    tail = log_path.read_text()[-2000:]
                    raise RuntimeError(f"streamlit exited ({proc.returncode}): {tail}")
                try:
                    with urllib.request.urlopen(f"http://localhost:{port}/_stcore/health", timeout=1) as r:
                        if r.status == 200:
                            break
                except OSError:
                    if time.monotonic() > deadline:
                        tail = log_path.read_text()[-2000:]
                        raise RuntimeError(f"streamlit not up in {timeout_s} s: {tail}") from None
                    time.sleep(0.25)
            yield f"http://localhost:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def launch_chromium(playwright):
    """Headless Debian Chromium (fails with a clear message when it is not installed)."""
    if not os.path.exists(CHROMIUM):
        raise RuntimeError(f"{CHROMIUM} is missing: `make test` installs Debian's chromium "
                           "(never `playwright install`)")
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def choose(page, key: str, option: str) -> None:
    """Pick ``option`` in the searchable st.selectbox whose key is ``key``."""
    box = page.locator(f".st-key-{key} input")
    box.click()
    box.fill(option)
    page.keyboard.press("Enter")


def first_render_s(page, url: str, selector: str, timeout_ms: int = 30_000) -> float:
    """Seconds from navigation to ``selector`` being visible (a fresh page: nothing cached but HTTP)."""
    start = time.monotonic()
    page.goto(url)
    page.locator(selector).first.wait_for(timeout=timeout_ms)
    return time.monotonic() - start


def wait_idle(page, timeout_ms: int = 30_000) -> None:
    """Wait until the script run has finished (Streamlit marks its root ``data-test-script-state``)."""
    page.locator("[data-testid='stApp'][data-test-script-state='notRunning']").wait_for(timeout=timeout_ms)


FIRST_PAINT_TARGETS = {
    "memory: numbers": ("/", ".qf-number"),  # ui.numbers: Markdown, not st.metric (a lazy chunk)
    "memory: chart": ("/", ".js-plotly-plot .main-svg"),
    "fit: verdict": ("/fit", "[data-testid='stAlert']"),
    "fit: chart": ("/fit", ".js-plotly-plot .main-svg"),
    "can run: table": ("/can_run", "[data-testid='stDataFrame']"),
    "formats: table": ("/formats", "[data-testid='stDataFrame']"),
    "quality: chart": ("/quality", ".js-plotly-plot .main-svg"),
    "reference: chart": ("/reference", ".js-plotly-plot .main-svg"),
    "compare: chart": ("/compare", ".js-plotly-plot .main-svg"),
}
"""What "first meaningful paint" means per page: (path, the element that answers). Issue 13's goals: under
1.5 s for the Memory numbers and the Fit verdict, under 3 s for every chart."""


def first_paint(browser, url: str, repeat: int = 1, width: int = 1400, height: int = 1000
                ) -> dict[str, list[float]]:
    """Seconds to each ``FIRST_PAINT_TARGETS`` element, ``repeat`` times, each in a fresh browser context (no
    page state, no HTTP cache). Warm up the server first (imports, presets): a first load measures those."""
    times: dict[str, list[float]] = {name: [] for name in FIRST_PAINT_TARGETS}
    for _ in range(repeat):
        for name, (path, selector) in FIRST_PAINT_TARGETS.items():
            context = browser.new_context(viewport={"width": width, "height": height})
            times[name].append(first_render_s(context.new_page(), url + path, selector, 60_000))
            context.close()
    return times


FLOOR_APP = """
import plotly.graph_objects as go
import streamlit as st

st.title("Floor")
st.markdown('<div class="qf-number">140.00 GB</div>', unsafe_allow_html=True)
st.plotly_chart(go.Figure(go.Bar(x=["fp16", "int8", "int4"], y=[140, 70, 35])))
"""
"""The least a Streamlit page with a number and a Plotly chart can cost: first paint of this script, measured
the same way as the app's pages, is the floor of what a page of ours can reach on the same machine."""

FLOOR_TARGETS = {"floor: number": ("/", ".qf-number"), "floor: chart": ("/", ".js-plotly-plot .main-svg")}


def floor_paint(browser, url: str, repeat: int = 1, width: int = 1400, height: int = 1000
                ) -> dict[str, list[float]]:
    """``first_paint`` of ``FLOOR_APP`` served at ``url`` (both targets from one load)."""
    times: dict[str, list[float]] = {name: [] for name in FLOOR_TARGETS}
    warm = browser.new_page()
    warm.goto(url)
    wait_idle(warm, 120_000)
    warm.close()
    for _ in range(repeat):
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        start = time.monotonic()
        page.goto(url)
        for name, (_, selector) in FLOOR_TARGETS.items():
            page.locator(selector).first.wait_for(timeout=60_000)
            times[name].append(time.monotonic() - start)
        context.close()
    return times


def warm_up(browser, url: str) -> None:
    """Load every page once (server imports, presets, cached tables), so timings measure a running app."""
    context = browser.new_context()
    page = context.new_page()
    for path in dict.fromkeys(p for p, _ in FIRST_PAINT_TARGETS.values()):
        page.goto(url + path)
        wait_idle(page, 120_000)
    context.close()
