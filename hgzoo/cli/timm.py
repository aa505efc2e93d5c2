"""``python -m hgzoo.timm_compat SCRIPT [ARGS...]``: timm's own scripts with hgzoo's models in timm's registry."""
from __future__ import annotations

import runpy
import sys
from pathlib import Path

from ..timm_compat import register
from .base import BadInput, guarded_main

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """``python -m hgzoo.timm_compat SCRIPT [ARGS...]``: :func:`register`, then run ``SCRIPT`` as ``__main__`` with
    ``ARGS`` (timm's train.py, validate.py, benchmark.py, or any script that builds models with timm)."""
    def run(args: list[str] | None) -> int:
        args = list(sys.argv[1:] if args is None else args)
        if not args or args[0] in ("-h", "--help"):
            print("usage: python -m hgzoo.timm_compat SCRIPT [ARGS...]  (registers hgzoo's models into timm, "
                  "then runs SCRIPT)")
            return 0 if args else 2
        script = Path(args[0])
        if not script.is_file():
            raise BadInput(f"{script}: no such script (give the path of timm's train.py, validate.py or benchmark.py)")
        register()
        sys.argv = [str(script), *args[1:]]
        try:
            runpy.run_path(str(script), run_name="__main__")
        except SystemExit as e:  # the script's own exit status
            return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        return 0

    return guarded_main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
