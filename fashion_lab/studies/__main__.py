"""`python -m fashion_lab.studies NAME ...`."""

import sys

from fashion_lab.studies import main

sys.exit(main())
