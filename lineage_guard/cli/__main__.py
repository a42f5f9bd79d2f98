"""`python -m lineage_guard.cli` is the `lineage-guard` command."""

from . import main

main()
