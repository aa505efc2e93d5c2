"""Commands: every argparse parser, exit code and printed line of hgzoo lives on this floor.

* :mod:`hgzoo.cli.main`: ``python -m hgzoo`` (``models``, and the commands below as subcommands);
* :mod:`hgzoo.cli.predict`, :mod:`hgzoo.cli.export`, :mod:`hgzoo.cli.validate` (``validate.py``),
  :mod:`hgzoo.cli.train` (``train.py``), :mod:`hgzoo.cli.convert` (``python -m hgzoo.convert``) and
  :mod:`hgzoo.cli.timm` (``python -m hgzoo.timm_compat SCRIPT``);
* :mod:`hgzoo.cli.base`: what every command does with a failure (one line, an exit code), and the argument types
  and flags they share.

The library below never prints and never exits: it raises, and the commands here say what went wrong.
"""
