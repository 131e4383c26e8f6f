"""``python -m wsss ...``: the same as the ``wsss`` console script (``wsss --help`` lists the commands)."""
from wsss.cli import main

if __name__ == "__main__":
    main()
