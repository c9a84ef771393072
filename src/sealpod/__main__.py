"""``python -m sealpod``: the command line."""

from sealpod.cli.app import main

main()
