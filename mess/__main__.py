"""``python -m mess`` runs the CLI."""

from mess.cli import main

main()
