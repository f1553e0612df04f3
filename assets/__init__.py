"""quantfit's data files, installed as the package ``quantfit_assets`` (see pyproject.toml).

Every table here carries its source: presets/ (config.json facts and official parameter counts), gpus.csv
(the GPU catalogue), reference/ (published quantization quality tables), results/ (bundled evaluation results).
Code finds this folder through ``calculator.paths.ASSETS_DIR``.
"""
