"""``python -m crmsync``: the same as the ``crm-sync`` command."""

from crmsync.entrypoints.cli import main

main()
