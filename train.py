#!/usr/bin/env python
"""Train an hgzoo model with its PaddleClas recipe: ``python train.py --model pphgnet_small --data-dir DIR``.

Every recipe value (configs/<model>.yaml) is a flag; ``--help`` lists them. Distributed:
``torchrun --nproc_per_node N train.py ...``. Fine-tune: ``--initial-checkpoint FILE --num-classes K
--lr-mult-list 0.1 0.1 0.2 0.2 0.3``. Distill: ``--teacher MODEL --teacher-checkpoint FILE [--extra-data LIST]``.
"""
from __future__ import annotations

import sys

from hgzoo.train import ConfigError, resolve_config, run


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = resolve_config(argv)
        run(cfg)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        import torch.distributed as dist
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
