#!/usr/bin/env python
"""Train an hgzoo model with its PaddleClas recipe: ``python train.py --model pphgnet_small --data-dir DIR``
(the same as ``python -m hgzoo train ...``, which works from a wheel install too).

Every recipe value (hgzoo/recipes/<model>.yaml) is a flag; ``--help`` describes them. Distributed:
``torchrun --nproc_per_node N train.py ...``. Fine-tune: ``--pretrained --num-classes K --lr-mult-list 0.1 0.1
0.2 0.2 0.3``. Distill: ``--teacher MODEL --teacher-checkpoint FILE [--extra-data LIST]``. Resume:
``--resume OUTPUT/last.pt`` (the run's own settings, changed by any flag given).

Exit codes: 0 done, 1 the run failed (a diverging loss, a full disk), 2 bad input (reported before training).
"""
from __future__ import annotations

import sys

from hgzoo.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
