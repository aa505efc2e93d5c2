"""``python -m hgzoo.convert``: the command lives in :mod:`hgzoo.cli.convert`, above the conversions of this
package; run as a module, it is run from there."""
import runpy

if __name__ == "__main__":
    runpy.run_module("hgzoo.cli.convert", run_name="__main__", alter_sys=True)
