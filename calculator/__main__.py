"""``python -m calculator``: see ``calculator.cli``."""

from calculator.cli import main

raise SystemExit(main())
