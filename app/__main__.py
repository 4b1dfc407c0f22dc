"""`python -m app ...` is the same as `cps ...`."""

from app.cli import main

main()
