"""calculator/ never imports torch or streamlit (the dependency direction of the product card)."""

import subprocess
import sys


def test_calculator_imports_neither_torch_nor_streamlit():
    code = (
        "import sys, calculator.cli, calculator.memory, calculator.models, calculator.formats, "
        "calculator.gguf_recipes\n"
        "import importlib.util\n"
        "for m in ('calculator.fit', 'calculator.hardware', 'calculator.runtime', 'calculator.training'):\n"
        "    if importlib.util.find_spec(m): __import__(m)\n"
        "calculator.cli.build_parser()\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'streamlit', 'transformers'))\n"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
