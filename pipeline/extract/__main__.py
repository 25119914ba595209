"""``python -m pipeline.extract``: ``dakd extract`` (:mod:`pipeline.cli.extract`)."""

import sys

from pipeline.cli.extract import main

sys.exit(main())
