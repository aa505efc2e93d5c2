#!/usr/bin/env python
"""Train an hgzoo model with its PaddleClas recipe: ``python train.py --model pphgnet_small --data-dir DIR``.

Every recipe value (configs/<model>.yaml) is a flag; ``--help`` lists them. Distributed:
``torchrun --nproc_per_node N train.py ...``. Fine-tune: ``--initial-checkpoint FILE --num-classes K
--lr-mult-list 0.1 0.1 0.2 0.2 0.3``. Distill: ``--teacher MODEL --teacher-checkpoint FILE [--extra-data LIST]``.
Resume: ``--resume OUTPUT/last.pt`` (the run's own settings, changed by any flag given).

Exit codes: 0 done, 1 the run failed (a diverging loss, a full disk), 2 bad input (reported before training).
"""
from __future__ import annotations

import sys

from hgzoo._cli import guarded_main


def _train(argv: list[str] | None) -> int:
    from hgzoo.train import resolve_config, run

    try:
        run(resolve_config(argv))
    finally:
        import torch.distributed as dist
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


def main(argv: list[str] | None = None) -> int:
    from hgzoo.train import ConfigError

    return guarded_main(_train, argv, bad_input=(ConfigError,), failed=(FloatingPointError,))


if __name__ == "__main__":
    sys.exit(main())
