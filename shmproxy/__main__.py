"""``python -m shmproxy`` runs the command line."""

from .cli.app import main

main()
