"""``python -m skycore_async``: the same as the ``skycore-async`` command."""

from .cli import main

raise SystemExit(main())
