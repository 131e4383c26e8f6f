"""``python -m wsss quickstart`` (same as the ``wsss`` console script)."""
from wsss.cli import main

main()
