"""``python -m fastapi_kc_m2m``: the ``kc-m2m`` command."""

from .cli import main

raise SystemExit(main())
