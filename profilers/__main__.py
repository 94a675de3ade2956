"""``python -m profilers`` runs ``mess-agent``."""

from profilers.cli import main

main()
