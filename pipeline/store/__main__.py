"""``python -m pipeline.store``: the store command (:mod:`pipeline.store.cli`)."""

import sys

from pipeline.store.cli import main

sys.exit(main())
