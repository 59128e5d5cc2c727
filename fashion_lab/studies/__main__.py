"""`python -m fashion_lab.studies NAME ...`."""

import sys

from fashion_lab.studies.command import main

sys.exit(main())
