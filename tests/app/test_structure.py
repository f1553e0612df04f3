"""The app's shape, checked: a page never imports another page (pages draw; shared parts live in ui/ and
the libraries), and the Memory page with every ui/ module loads without torch (the evaluation engine loads
torch only when a quality run starts)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted((ROOT / "app_pages").glob("*.py"))
UI = sorted((ROOT / "ui").glob("*.py"))


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import in ``path``; a relative import shows as ``.`` + its module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, "." * node.level + (node.module or "")))
    return found


def test_the_pages_are_the_ones_app_py_lists():
    listed = {node.value for node in ast.walk(ast.parse((ROOT / "app.py").read_text()))
              if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.endswith(".py")}
    assert listed == {f"app_pages/{p.name}" for p in PAGES}


def test_no_page_imports_a_page():
    offending = [f"{path.relative_to(ROOT)}:{line} imports {module}"
                 for path in [*PAGES, *UI, ROOT / "app.py"]
                 for line, module in imported_modules(path)
                 if module.split(".")[0] == "app_pages" or module.startswith(".")]
    assert not offending, "pages draw; move shared code to ui/ or a library:\n" + "\n".join(offending)


def test_the_import_check_sees_page_imports(tmp_path):
    """The check above is not vacuous: it finds each way of importing a page."""
    page = tmp_path / "p.py"
    page.write_text("import app_pages.quality\nfrom app_pages import common\nfrom .quality import X\n")
    assert imported_modules(page) == [(1, "app_pages.quality"), (2, "app_pages"), (3, ".quality")]


def test_no_ui_module_imports_torch_at_top_level():
    offending = [f"{path.name}:{line} imports {module}" for path in UI for line, module in imported_modules(path)
                 if module.split(".")[0] in ("torch", "transformers")
                 or module in ("evaluation.runner", "evaluation.methods", "evaluation.models")]
    assert not offending, offending


# Run in a fresh interpreter: this test process has imported torch already (other tests).
_PROBE = """
import importlib, json, pkgutil, sys
import ui
for info in pkgutil.iter_modules(ui.__path__):
    importlib.import_module(f"ui.{info.name}")
import evaluation.plan
from streamlit.testing.v1 import AppTest
report = {}
for page in sys.argv[1:]:
    at = AppTest.from_file("app.py", default_timeout=120)
    at.switch_page(f"app_pages/{page}.py")
    at.run()
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers"))
    report[page] = {"exception": [str(e.value) for e in at.exception], "metrics": len(at.metric),
                    "numbers": sum(m.value.count('class="qf-number"') for m in at.markdown),
                    "charts": len(at.get("plotly_chart")), "heavy": heavy[:10]}
print(json.dumps(report))
"""


def _first_render(*pages: str) -> dict:
    """Import every ui module, then render ``pages`` under app.py in one fresh interpreter, in order."""
    done = subprocess.run([sys.executable, "-c", _PROBE, *pages], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_memory_page_and_ui_do_not_import_torch():
    memory = _first_render("memory")["memory"]
    assert memory["exception"] == [] and memory["numbers"] == 4  # the page really ran: parameters + 3 sizes
    assert memory["heavy"] == [], f"importing ui/ or running the Memory page loaded {memory['heavy']}"


def test_no_page_loads_torch_before_a_run():
    """Torch loads when the Quality page's Run is pressed, not when a page (charts included) is drawn."""
    report = _first_render("quality", "reference", "compare", "formats", "fit", "can_run")
    for page, seen in report.items():
        assert seen["exception"] == [], (page, seen["exception"])
        assert seen["heavy"] == [], f"drawing the {page} page loaded {seen['heavy']}"
    assert all(report[p]["charts"] for p in ("quality", "reference", "compare", "fit"))


def test_pages_hold_no_bare_strings_but_their_docstring():
    """Streamlit's magic prints a bare string in a page script (an attribute "docstring" under a constant
    shows up on the page): pages document constants with comments."""
    offending = []
    for path in PAGES:
        body = ast.parse(path.read_text()).body
        offending += [f"{path.name}:{node.lineno}" for node in body[1:]
                      if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
                      and isinstance(node.value.value, str)]
    assert not offending, offending


def test_plain_streamlit_run_watches_no_files():
    """Issue 13 item 12: `streamlit run app.py` without make's flag is quiet too (no .venv watching)."""
    import tomllib

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["fileWatcherType"] == "none"
    assert "--server.fileWatcherType none" in (ROOT / "Makefile").read_text()
