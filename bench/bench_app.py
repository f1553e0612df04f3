"""Time the web app: server-side reruns after a widget change, and first meaningful paint in a real browser.

Goals: a widget change reruns a page in < 300 ms server-side (issue 4); in a real browser on an idle
machine the Memory numbers and the Fit verdict paint in < 1.5 s and every chart in < 3 s (issue 13).
Figures are printed, not asserted (they depend on the machine and its load, which is printed first).

- Reruns: each page runs in ``streamlit.testing.v1.AppTest`` (the real script runner, in-process); every
  widget change below is one ``run()``, timed wall-clock. That includes AppTest's own bookkeeping, so it is
  an upper bound of the server's script time. "cold" = first time a model/format is computed (empty
  caches); "warm" = the same change again (st.cache_data hit).
- Browser (``--browser``): ``streamlit run app.py`` on a free port, headless Debian Chromium
  (/usr/bin/chromium via playwright); every page loaded once to warm the server, then a fresh browser
  context per load (no HTTP cache: each chart load parses plotly.js again); seconds from navigation to
  each page's answer (``tests.app.live.FIRST_PAINT_TARGETS``: the Memory numbers, the Fit verdict, every
  chart and table), the same measurement the browser suite prints; then the floor: a bare Streamlit page with
  one Markdown number and one Plotly chart (``tests.app.live.FLOOR_APP``), served and timed the same way.

Run from the project root: ``.venv/bin/python -m bench.bench_app [--browser] [--repeat 5]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

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
    "app_pages/can_run.py": [
        ("GPU -> H100 SXM", lambda at: at.selectbox(key="gpu").select("H100 SXM")),
        ("context -> 32k", lambda at: at.pills(key="ctx_preset").set_value("32k")),
        ("KV cache -> q8_0", lambda at: at.selectbox(key="kv").select("q8_0")),
    ],
    "app_pages/formats.py": [
        ("family filter -> GPTQ", lambda at: at.pills(key="fam").set_value(["GPTQ"])),
    ],
    "app_pages/formats.py?tab=Recipe+on+a+model": [
        ("file type -> IQ2_XS", lambda at: at.selectbox(key="ft").select("IQ2_XS")),
        ("preset -> llama-3.1-405b", lambda at: at.selectbox(key="model").select("llama-3.1-405b")),
    ],
    "app_pages/fit.py?view=Every+format": [
        ("model -> llama-3.1-70b", lambda at: at.selectbox(key="model").select("llama-3.1-70b")),
        ("context -> 32k", lambda at: at.pills(key="ctx_preset").set_value("32k")),
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
        path, _, query = page.partition("?")
        if path != "app_pages/memory.py":  # the default page runs at the root (/memory is an alias)
            at.switch_page(path)
        for key, value in (pair.split("=") for pair in query.split("&") if pair):
            at.query_params[key] = value.replace("+", " ")
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

    from tests.app.live import FLOOR_APP, first_paint, floor_paint, launch_chromium, serve_app, warm_up

    with tempfile.TemporaryDirectory(prefix="quantfit-floor-") as tmp, sync_playwright() as p:
        browser = launch_chromium(p)
        with serve_app() as url:
            warm_up(browser, url)
            times = first_paint(browser, url, repeat)
        floor = Path(tmp) / "floor.py"
        floor.write_text(FLOOR_APP)
        with serve_app(script=str(floor)) as url:
            times.update(floor_paint(browser, url, repeat))
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
        short = Path(page.split("?")[0]).stem + ("+" if "?" in page else "")
        if warm is None:
            print(f"{short:<8} {name:<46} {cold[0]:9.1f} {cold[1]:7.1f}")
            continue
        worst_wall, worst_cpu = max(worst_wall, cold[0]), max(worst_cpu, cold[1])
        flag = "  over budget" if cold[1] > BUDGET_MS else ""
        print(f"{short:<8} {name:<46} {cold[0]:9.1f} {cold[1]:7.1f} {warm[0]:9.1f} {warm[1]:7.1f}{flag}")
    print(f"worst widget change: {worst_wall:.1f} ms wall, {worst_cpu:.1f} ms CPU (budget {BUDGET_MS} ms)")
    if args.browser:
        print(f"\nFirst meaningful paint in headless Chromium (s, median / max of {args.repeat}; goals: "
              "numbers and verdict 1.5 s, charts 3 s)")
        for name, values in bench_browser(args.repeat).items():
            print(f"{name:<20} {statistics.median(values):6.2f} {max(values):6.2f}")
        print("(floor: a bare Streamlit page with one Markdown number and one 3-bar Plotly chart, measured the "
              "same way: no page of ours can paint faster than this on this machine)")
        print(f"load average (1 min) after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
