"""`python -m synthvlm` is the `synthvlm` command."""

from synthvlm.cli import main

main()
