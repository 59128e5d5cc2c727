"""`python -m fashion_lab.study NAME ...`: the earlier name of `python -m fashion_lab.studies NAME ...`, which the
committed reports/seed_study.md and existing scripts still use. The code is in fashion_lab/studies/."""

import sys

from fashion_lab.studies import main

if __name__ == "__main__":
    sys.exit(main())
