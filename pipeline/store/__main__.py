"""``python -m pipeline.store``: the store command (:mod:`pipeline.cli.store`)."""

import sys

from pipeline.cli.store import main

sys.exit(main())
