"""``python -m mmembed``: the same as the ``mmembed`` command."""

from __future__ import annotations

import sys

from mmembed.cli import main

sys.exit(main())
