"""Convert PaddleClas (and timm) checkpoints to Hub-ready safetensors folders, hgzoo weights to timm's layout, and
publish train.py checkpoints.

  python -m hgzoo.convert --model pphgnet_small --input X.pdparams|URL --output DIR [--num-classes N]
                          [--push-to-hub ORG/REPO]
  python -m hgzoo.convert --all PADDLE_DIR --output DIR     (every official checkpoint found in PADDLE_DIR)
  python -m hgzoo.convert --from timm --input X.safetensors|X.pth|X.pth.tar|hf-hub:timm/REPO --output DIR
                          [--model hgnet_small|pphgnet_small]
  python -m hgzoo.convert --to timm --model pphgnet_small[.tag] --input WEIGHTS --output DIR [--timm-model NAME]
  python -m hgzoo.convert --from dfine|rtdetrv2|presnet|transformers --model B4|L|50 --input THEIR.pth --output DIR
  python -m hgzoo.convert --to dfine|rtdetrv2|presnet|transformers --model B4|L|50 --input HGZOO.safetensors
                          --output DIR  (a detector's backbone file, or the backbone.* of its checkpoint;
                          see docs/detectors.md)
  python -m hgzoo.convert --input runs/x/best.pt --output DIR [--push-to-hub ORG/REPO]
                          (a train.py checkpoint: self-describing, so no --model)

An official checkpoint is recognised by its file name (e.g. PPHGNet_small_ssld_pretrained.pdparams) and keeps
its tag's published metrics; any other file is a user's own PaddleClas training, whose class count is read
from the checkpoint and whose model card claims no published accuracy.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .._files import write_failure
from ..publish import save_pretrained, upload_folder
from ..publish.detector_files import convert_detector_file, detector_origins
from ..publish.paddle_folders import convert_file, official_cfg_for_file
from .base import BadInput, RunFailed, guarded_main, one_line, positive_int


def _upload(folder: Path, repo_id: str, private: bool) -> str:
    return upload_folder(folder, repo_id, private, commit_message="Upload converted weights")


def publish_checkpoint(source: str, output: Path, repo_id: str | None) -> Path:
    """A train.py checkpoint (``--input best.pt`` without ``--model``) to a Hub folder: its model, classes,
    preprocessing, accuracy and run settings come from the checkpoint."""
    path = Path(source)
    if not path.is_file():
        raise BadInput(f"--input {source}: no such file (a train.py checkpoint; a .pdparams also needs --model)")
    if path.suffix == ".pdparams":
        raise BadInput(f"--input {source} is a PaddleClas checkpoint: give --model too")
    return save_pretrained(path, output, repo_id=repo_id)


def _main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hgzoo.convert", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="architecture (or arch.tag), e.g. pphgnet_small or PPHGNet_small")
    ap.add_argument("--input", help="a .pdparams file or URL")
    ap.add_argument("--all", metavar="DIR", help="convert every official checkpoint in DIR")
    ap.add_argument("--output", required=True, help="output folder")
    ap.add_argument("--num-classes", type=positive_int, help="class count (default: read from the checkpoint)")
    ap.add_argument("--push-to-hub", metavar="ORG/REPO", help="upload the folder with huggingface_hub")
    ap.add_argument("--private", action="store_true", help="with --push-to-hub: create a private repo")
    ap.add_argument("--from", dest="from_layout", choices=("paddle", "timm", *detector_origins()), default="paddle",
                    help="the layout of --input: a PaddleClas .pdparams (default), a timm checkpoint, or a detector's "
                         "backbone (--model: their name, B4/L/50)")
    ap.add_argument("--to", dest="to_layout", choices=("hgzoo", "timm", *detector_origins()), default="hgzoo",
                    help="the layout written: an hgzoo Hub folder (default), a folder timm loads, or a detector's "
                         "backbone file")
    ap.add_argument("--timm-model", metavar="NAME", help="with --to timm: timm's architecture (e.g. hrnet_w18_ssld)")
    args = ap.parse_args(argv)
    detector = {args.from_layout, args.to_layout} & set(detector_origins())
    if detector:
        return _detector_main(ap, args, detector)
    if args.from_layout == "timm" or args.to_layout == "timm":
        return _timm_main(ap, args)
    if bool(args.all) == bool(args.input):
        ap.error("give either --model and --input, or --all DIR, or --input CHECKPOINT.pt")
    if Path(args.output).exists() and not Path(args.output).is_dir():
        raise BadInput(f"--output {args.output} is a file; give a folder")
    if args.input and not args.model:  # a train.py checkpoint
        if args.num_classes is not None:
            raise BadInput("--num-classes: a train.py checkpoint carries its own class count")
        out = publish_checkpoint(args.input, Path(args.output), args.push_to_hub)
        print(f"wrote {out}")
        if args.push_to_hub:
            print(f"pushed: {_upload(out, args.push_to_hub, args.private)}")
        return 0
    if args.input:
        out = convert_file(args.model, args.input, Path(args.output), args.num_classes)
        print(f"wrote {out}")
        if args.push_to_hub:
            print(f"pushed: {_upload(out, args.push_to_hub, args.private)}")
        return 0
    if not Path(args.all).is_dir():
        raise BadInput(f"--all {args.all} is not a folder")
    files = sorted(Path(args.all).glob("*.pdparams"))
    if not files:
        raise BadInput(f"no .pdparams files in {args.all}")
    failed, machine = [], False
    for f in files:
        cfg = official_cfg_for_file(f.name)
        if cfg is None:
            print(f"skipped {f.name}: not an official checkpoint name (convert it with --model and --input)")
            continue
        try:
            out = convert_file(cfg.name, str(f), Path(args.output) / cfg.name)
            print(f"wrote {out}")
        except Exception as e:  # noqa: BLE001 - one bad file must not stop the others
            failed.append(f.name)
            machine = machine or write_failure(e) is not None
            print(f"FAILED {f.name}: {one_line(e)}", file=sys.stderr)
    if failed:  # bad files are bad input (exit 2); a full disk is the machine's (exit 1)
        error = RunFailed if machine else BadInput
        raise error(f"{len(failed)} of {len(files)} files failed to convert: {', '.join(failed)}")
    return 0


def _detector_main(ap: argparse.ArgumentParser, args: argparse.Namespace, detector: set[str]) -> int:
    """``--from/--to dfine|rtdetrv2|presnet|transformers``: one detector backbone file, converted strictly."""
    if not (args.model and args.input) or args.all or (args.from_layout != "paddle" and args.to_layout != "hgzoo"):
        ap.error("a detector backbone converts one file: give --model (their name) and --input, and one of "
                 "--from/--to")
    print("wrote " + convert_detector_file(
        args.input, args.output, args.model, from_origin=args.from_layout if args.from_layout in detector else None,
        to_origin=args.to_layout if args.to_layout in detector else None))
    return 0


def _timm_main(ap: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """``--from timm`` / ``--to timm``: one file, no --all, --num-classes or --push-to-hub."""
    from ..publish.timm_folders import convert_from_timm, convert_to_timm

    if args.from_layout == "timm" and args.to_layout == "timm":
        ap.error("--from timm and --to timm together convert nothing; give one of them")
    if not args.input or args.all:
        ap.error("--from timm / --to timm convert one file: give --input (and no --all)")
    for flag, value in (("--num-classes", args.num_classes), ("--push-to-hub", args.push_to_hub)):
        if value is not None:
            ap.error(f"{flag} does not go with --from timm / --to timm")
    if Path(args.output).exists() and not Path(args.output).is_dir():
        raise BadInput(f"--output {args.output} is a file; give a folder")
    if args.from_layout == "timm":
        if args.timm_model:
            ap.error("--timm-model goes with --to timm; with --from timm, --model names the checkpoint's network")
        out = convert_from_timm(args.input, Path(args.output), args.model)
    else:
        if not args.model:
            ap.error("--to timm needs --model (the hgzoo architecture or tag of --input)")
        out = convert_to_timm(args.model, args.input, Path(args.output), args.timm_model)
    print(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 done, 1 a write failed (a full disk), 2 bad input (some files of --all among it)."""
    import urllib.error

    return guarded_main(_main, argv, bad_input=(ValueError, TypeError, urllib.error.URLError))



if __name__ == "__main__":
    sys.exit(main())
