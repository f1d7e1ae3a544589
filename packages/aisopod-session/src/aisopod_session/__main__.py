"""`python -m aisopod_session`: the `aisopod-session` command."""

from aisopod_session.cli import main

raise SystemExit(main())
