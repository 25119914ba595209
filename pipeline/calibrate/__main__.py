"""``python -m pipeline.calibrate``: ``dakd calibrate`` (:mod:`pipeline.cli.calibrate`)."""

import sys

from pipeline.cli.calibrate import main

sys.exit(main())
