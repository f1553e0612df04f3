"""Screenshots of every page at desktop and phone size for the docs: ``docs/screenshots/<page>.png`` (1400 x
1000) and ``docs/screenshots/<page>-phone.png`` (390 x 844, an iPhone 12-15 viewport).

Starts ``streamlit run app.py`` on a free localhost port and photographs each page in headless Debian
Chromium (/usr/bin/chromium through playwright, as the browser test does; never ``playwright install``).
A desktop shot is the whole page; a phone shot is the first three screens (what a thumb scrolls through).
``quality-chart.png`` is the Quality chart as its PNG download gives it (title and source line included).
Run: ``.venv/bin/python scripts/screenshots.py [--out docs/screenshots] [--only fit,memory]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from tests.app.live import launch_chromium, serve_app, wait_idle  # noqa: E402

SIZES = {"": (1400, 1000), "-phone": (390, 844)}
"""File-name suffix -> viewport (CSS pixels)."""
PHONE_SCREENS = 3
"""A phone shot covers this many screens of the page."""
MAX_HEIGHT = 4000
# (file name, URL path and query, element that means "rendered")
SHOTS = [
    ("memory", "/", ".js-plotly-plot .main-svg"),
    ("fit", "/fit", ".js-plotly-plot .main-svg"),
    ("fit-offload", "/fit?model=llama-3.1-70b&fmt=IQ2_XS&ctx=32768&kv=q4_0", ".js-plotly-plot .main-svg"),
    ("fit-formats", "/fit?model=llama-3.1-70b&view=Every+format", "[data-testid='stDataFrame']"),
    ("can_run", "/can_run", "[data-testid='stDataFrame']"),
    ("formats", "/formats", "[data-testid='stDataFrame']"),
    ("formats-recipe", "/formats?tab=Recipe+on+a+model&model=llama-3.1-8b", "[data-testid='stMetric']"),
    ("quality", "/quality", ".js-plotly-plot .main-svg"),
    ("reference", "/reference", ".js-plotly-plot .main-svg"),
    ("compare", "/compare", ".js-plotly-plot .main-svg"),
]


def _download_png(page, key_class: str, target: Path) -> Path:
    """Click a chart's PNG download button (rendered by kaleido on the server) and save the file."""
    with page.expect_download(timeout=120_000) as download:
        page.locator(f"{key_class} button").first.click()  # .first: a tooltip keeps a hidden copy
    download.value.save_as(target)
    return target


def shoot(out_dir: Path, only: set[str] | None = None) -> list[Path]:
    from playwright.sync_api import sync_playwright

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with serve_app() as url, sync_playwright() as p:
        browser = launch_chromium(p)
        for name, path, ready in SHOTS:
            if only and name not in only:
                continue
            for suffix, (width, height) in SIZES.items():
                page = browser.new_page(viewport={"width": width, "height": height}, accept_downloads=True)
                page.goto(url + path)
                page.locator(ready).first.wait_for(timeout=90_000)
                wait_idle(page, 90_000)
                time.sleep(1.5)  # let charts finish their transitions
                # Streamlit scrolls inside its main block: grow the viewport to the content, then shoot it.
                full = page.evaluate("document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
                limit = height * PHONE_SCREENS if suffix else MAX_HEIGHT
                page.set_viewport_size({"width": width, "height": min(int(full) + 40, limit)})
                time.sleep(0.7)
                target = out_dir / f"{name}{suffix}.png"
                page.screenshot(path=str(target))
                written.append(target)
                if name == "quality" and not suffix:
                    written.append(_download_png(page, ".st-key-quality_chart_dl_png", out_dir / "quality-chart.png"))
                page.close()
        browser.close()
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--only", default="", help="comma-separated shot names (default: all)")
    args = parser.parse_args()
    only = {s.strip() for s in args.only.split(",") if s.strip()} or None
    for path in shoot(args.out, only):
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


if __name__ == "__main__":
    main()
