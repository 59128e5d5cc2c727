"""`python -m fashion_lab.cli ...`: the same command as `fashion-lab ...`."""

from fashion_lab.cli import cli_main

cli_main()
