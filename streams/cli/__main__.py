"""`python -m streams.cli`: the same as `ioc` (the demo and the tests start workers so)."""

from __future__ import annotations

import sys

from streams.cli import main

sys.exit(main())
