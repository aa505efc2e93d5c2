#!/usr/bin/env python
"""Evaluate hgzoo models on a labelled image set: top-1 / top-5 and images/s, on torch or the deployed file
(the same as ``python -m hgzoo validate ...``, which works from a wheel install too). ``--help`` lists the flags.

Exit codes: 0 done, 1 a model failed, an export failed its verification or an image did not decode (without
--skip-bad-images), 2 bad input.
"""
from __future__ import annotations

import sys

from hgzoo.cli.validate import main

if __name__ == "__main__":
    sys.exit(main())
