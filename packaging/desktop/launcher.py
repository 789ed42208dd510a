"""Entry point of the bundled app: the window with no arguments, the CLI (ask, models, serve, history) with them.

With PROBE_FLAG first it is the model-pair probe child (app/core/models/probe.py): in the bundle sys.executable
is this app, so that is how a pair's first load runs in a process of its own.
"""

import sys

from app.core.models.probe import PROBE_FLAG

if len(sys.argv) > 1 and sys.argv[1] == PROBE_FLAG:
    from app.core.models.probe import probe_main

    raise SystemExit(probe_main(sys.argv[2:]))

from app.cli import main  # noqa: E402

raise SystemExit(main())
