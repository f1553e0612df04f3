"""Time the web app: server-side reruns after a widget change, and first render in a real browser.

Goals (issue 4): a widget change reruns a page in < 300 ms server-side; the first page renders in a
real browser in < 3 s on localhost.

- Reruns: each page runs in ``streamlit.testing.v1.AppTest`` (the real script runner, in-process); every
  widget change below is one ``run()``, timed wall-clock. That includes AppTest's own bookkeeping, so it is
  an upper bound of the server's script time. "cold" = first time a model/format is computed (empty
  caches); "warm" = the same change again (st.cache_data hit).
- Browser (``--browser``): ``streamlit run app.py`` on a free port, headless Debian Chromium
  (/usr/bin/chromium via playwright); a fresh browser context per load; seconds from navigation to the
  page's first result (verdict / metric) and to the Plotly chart being drawn.

Run: ``.venv/bin/python bench/bench_app.py [--browser] [--repeat 5]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

BUDGET_MS = 300
APP = str(ROOT / "app.py")

# (page, description, action) -- action(at) changes one widget; every page starts from its defaults.
CHANGES = {
    "app_pages/memory.py": [
        ("params 70B -> 405B", lambda at: at.text_input(key="params").set_value("405B")),
        ("source -> preset (llama-3.1-8b)", lambda at: at.segmented_control(key="src").set_value("Preset")),
        ("preset -> llama-3.1-405b", lambda at: at.selectbox(key="model").select("llama-3.1-405b")),
        ("preset -> deepseek-v3", lambda at: at.selectbox(key="model").select("deepseek-v3")),
        ("add format Q5_K_S", lambda at: at.multiselect(key="add").select("Q5_K_S")),
        ("GPU lines + RTX 3090", lambda at: at.multiselect(key="gpus").select("RTX 3090")),
    ],
    "app_pages/fit.py": [
        ("context 8192 -> 32768", lambda at: at.number_input(key="ctx").set_value(32768)),
        ("GPU -> H100 SXM", lambda at: at.selectbox(key="gpu").select("H100 SXM")),
        ("format -> Q8_0", lambda at: at.selectbox(key="fmt").select("Q8_0")),
        ("KV cache -> q8_0", lambda at: at.selectbox(key="kv").select("q8_0")),
        ("model -> llama-3.1-70b", lambda at: at.selectbox(key="model").select("llama-3.1-70b")),
        ("model -> llama-3.1-405b", lambda at: at.selectbox(key="model").select("llama-3.1-405b")),
        ("GPUs 1 -> 8", lambda at: at.number_input(key="n_gpus").set_value(8)),
        ("mode -> QLoRA", lambda at: at.segmented_control(key="mode").set_value("QLoRA")),
    ],
    "app_pages/formats.py": [
        ("family filter -> GPTQ", lambda at: at.pills(key="fam").set_value(["GPTQ"])),
        ("file type -> IQ2_XS", lambda at: at.selectbox(key="ft").select("IQ2_XS")),
        ("preset -> llama-3.1-405b", lambda at: at.selectbox(key="model").select("llama-3.1-405b")),
    ],
}


def _timed_run(at) -> tuple[float, float]:
    """(wall ms, CPU ms of this process) of one ``at.run()``; CPU time is what the rerun itself costs, wall
    time also counts waiting for a core on a busy machine."""
    wall, cpu = time.perf_counter(), time.process_time()
    at.run()
    return (time.perf_counter() - wall) * 1e3, (time.process_time() - cpu) * 1e3


def bench_reruns() -> list[tuple[str, str, tuple[float, float], tuple[float, float] | None]]:
    """(page, change, cold (wall, cpu) ms, warm (wall, cpu) ms) for every change."""
    from streamlit.testing.v1 import AppTest

    from ui.guard import clear_caches

    out = []
    for page, changes in CHANGES.items():
        clear_caches()
        at = AppTest.from_file(APP, default_timeout=120)
        at.switch_page(page)
        out.append((page, "first run (imports, presets, default model)", _timed_run(at), None))
        for name, change in changes:
            change(at)
            cold = _timed_run(at)
            assert not at.exception, (page, name, at.exception)
            warm = _timed_run(at)  # same inputs again: every cache hit
            out.append((page, name, cold, warm))
    clear_caches()
    return out


def bench_browser(repeat: int) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    from tests.app.live import first_render_s, launch_chromium, serve_app

    targets = {
        "memory (metrics)": ("/", "[data-testid='stMetric']"),
        "memory (chart)": ("/", ".js-plotly-plot .main-svg"),
        "fit (verdict)": ("/fit", "[data-testid='stAlert']"),
        "fit (chart)": ("/fit", ".js-plotly-plot .main-svg"),
        "formats (table)": ("/formats", "[data-testid='stDataFrame']"),
    }
    times: dict[str, list[float]] = {name: [] for name in targets}
    with serve_app() as url, sync_playwright() as p:
        browser = launch_chromium(p)
        warmup = browser.new_context()
        first_render_s(warmup.new_page(), url + "/fit", "[data-testid='stAlert']", 60_000)  # server imports
        warmup.close()
        for _ in range(repeat):
            for name, (path, selector) in targets.items():
                context = browser.new_context(viewport={"width": 1440, "height": 900})
                times[name].append(first_render_s(context.new_page(), url + path, selector))
                context.close()
        browser.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--browser", action="store_true", help="also time first render in headless Chromium")
    parser.add_argument("--repeat", type=int, default=5, help="browser loads per page (default 5)")
    args = parser.parse_args()
    os.chdir(ROOT)
    load = os.getloadavg()[0]
    print(f"CPU cores: {os.cpu_count()}, load average (1 min): {load:.2f}")
    print(f"\nServer-side reruns after one widget change (AppTest; ms wall / ms CPU; budget {BUDGET_MS} ms)")
    print(f"{'page':<8} {'change':<46} {'cold wall':>9} {'cpu':>7} {'warm wall':>9} {'cpu':>7}")
    worst_wall = worst_cpu = 0.0
    for page, name, cold, warm in bench_reruns():
        short = Path(page).stem
        if warm is None:
            print(f"{short:<8} {name:<46} {cold[0]:9.1f} {cold[1]:7.1f}")
            continue
        worst_wall, worst_cpu = max(worst_wall, cold[0]), max(worst_cpu, cold[1])
        flag = "  over budget" if cold[1] > BUDGET_MS else ""
        print(f"{short:<8} {name:<46} {cold[0]:9.1f} {cold[1]:7.1f} {warm[0]:9.1f} {warm[1]:7.1f}{flag}")
    print(f"worst widget change: {worst_wall:.1f} ms wall, {worst_cpu:.1f} ms CPU (budget {BUDGET_MS} ms)")
    if args.browser:
        print(f"\nFirst render in headless Chromium (s, median / max of {args.repeat}; budget 3 s)")
        for name, values in bench_browser(args.repeat).items():
            print(f"{name:<20} {statistics.median(values):6.2f} {max(values):6.2f}")


if __name__ == "__main__":
    main()
