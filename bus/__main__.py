"""``python -m bus``: the ``bus`` command line."""

from bus._cli import main

raise SystemExit(main())
