"""``python -m pipeline.evaluate``: ``dakd evaluate`` (:mod:`pipeline.cli.evaluate`)."""

import sys

from pipeline.cli.evaluate import main

sys.exit(main())
