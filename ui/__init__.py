"""Shared Streamlit parts of the quantfit app: the pages in ``app_pages/`` draw with these.

Each module holds one concern (the error guard, the model and GPU pickers, URL state, sharing, exports,
charts, result rows, the quality pages' cached data, the sidebar footer). UI only: every number comes from
``calculator`` or ``evaluation``. Importing any of it never imports torch (``tests/app/test_structure.py``).
"""
