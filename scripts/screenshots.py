"""Screenshots of every page for the README: ``docs/screenshots/<page>.png``.

Starts ``streamlit run app.py`` on a free localhost port and photographs each page in headless Debian
Chromium (/usr/bin/chromium through playwright, as the browser test does; never ``playwright install``).
Run: ``.venv/bin/python scripts/screenshots.py [--out docs/screenshots]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from tests.app.live import launch_chromium, serve_app  # noqa: E402

WIDTH = 1440
# (file name, URL path and query, element that means "rendered")
SHOTS = [
    ("memory", "/", ".js-plotly-plot .main-svg"),
    ("fit", "/fit", ".js-plotly-plot .main-svg"),
    ("formats", "/formats", "[data-testid='stDataFrame']"),
    ("formats-recipe", "/formats?model=llama-3.1-8b&ft=Q4_K_M", "[data-testid='stDataFrame']"),
    ("quality", "/quality", ".js-plotly-plot .main-svg"),
    ("reference", "/reference", ".js-plotly-plot .main-svg"),
    ("compare", "/compare", ".js-plotly-plot .main-svg"),
]


def shoot(out_dir: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with serve_app(extra_args=("--client.toolbarMode", "minimal")) as url, sync_playwright() as p:
        browser = launch_chromium(p)
        for name, path, ready in SHOTS:
            page = browser.new_page(viewport={"width": WIDTH, "height": 1000})
            page.goto(url + path)
            page.locator(ready).first.wait_for(timeout=60_000)
            if name == "formats-recipe":
                page.get_by_role("tab", name="Recipe on a model").click()
                page.locator("[data-testid='stMetric']").first.wait_for(timeout=30_000)
            time.sleep(1.5)  # let charts finish their transitions
            # Streamlit scrolls inside its main block: grow the viewport to the content, then shoot it all.
            height = page.evaluate("document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
            page.set_viewport_size({"width": WIDTH, "height": min(int(height) + 40, 4000)})
            time.sleep(0.5)
            target = out_dir / f"{name}.png"
            page.screenshot(path=str(target))
            written.append(target)
            page.close()
        browser.close()
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    for path in shoot(args.out):
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


if __name__ == "__main__":
    main()
