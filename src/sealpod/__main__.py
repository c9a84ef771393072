"""``python -m sealpod``: the command line."""

from sealpod.cli.entry import main

main()
