"""``python -m sealtune``."""

from sealtune.cli import main

main()
