"""``python -m callqa.cli``: the ``callqa`` command."""
import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
