"""Entry point of the bundled app: the window with no arguments, the CLI (ask, models, serve, history) with them."""

from app.cli import main

raise SystemExit(main())
