"""``python -m pipeline.export``: ``dakd export`` (:mod:`pipeline.cli.export`)."""

import sys

from pipeline.cli.export import main

sys.exit(main())
