"""``python -m hgzoo``: the command line of :mod:`hgzoo.cli.main`."""
import sys

from hgzoo.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
