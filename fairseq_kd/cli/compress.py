"""fairseq-kd-compress: a small file from a (pruned) checkpoint: sparse storage and/or int8 weights, xz-compressed.

    fairseq-kd-compress CKPT --output SMALL.pt [--sparse] [--int8]
    fairseq-kd-compress CKPT --output MODEL.pt --strip
    fairseq-kd-compress A/checkpoint_best.pt B/checkpoint_best.pt --strip --output DIR   (DIR/A.pt, DIR/B.pt)

--strip writes a plain fairseq checkpoint without optimizer state and task state (the dense fp32 file to deploy and compare
against; fairseq-generate loads it as any checkpoint). With several inputs, --output is a directory and each
file is named after its checkpoint's directory.

Prints the size of the dense fp32 weights (what the model needs, without optimizer state), the input
checkpoint's size, the compressed size and the ratios. SMALL.pt decodes with `fairseq-generate --user-dir
fairseq_kd --path SMALL.pt` or fairseq-kd-speed (which also re-checks BLEU with --ref); with --int8 both run
torch's int8 kernels on CPU. Format: fairseq_kd.compression.
"""
import argparse
import os

from .. import compression
from ..errors import FairseqKDError
from ..checkpoint_compat import plain_cfg, read_checkpoint
from ..outputs import atomic_path, output_dir, output_file


def dense_fp32_bytes(state):
    return sum(t.numel() * 4 for t in state["model"].values() if t.is_floating_point())


def strip(state, output):
    """The checkpoint without what only training needs; written atomically."""
    import torch

    # fairseq's loader needs the rest; task_state holds training-only state such as translation_prune's masks
    kept = {k: v for k, v in state.items() if k not in ("last_optimizer_state", "task_state")}
    kept["cfg"] = plain_cfg(state.get("cfg"))
    with atomic_path(output) as tmp:
        torch.save(kept, tmp)


def strip_all(checkpoints, output):
    if len(checkpoints) == 1:
        outputs = [output_file(output, "--output")]
    else:
        output_dir(output, "--output")
        names = [os.path.basename(os.path.dirname(os.path.abspath(c))) for c in checkpoints]
        if len(set(names)) < len(names):
            raise FairseqKDError(f"several inputs from one directory ({', '.join(names)}): strip them one by one")
        outputs = [os.path.join(output, f"{n}.pt") for n in names]
    for src, dst in zip(checkpoints, outputs):
        if os.path.abspath(src) == os.path.abspath(dst):
            raise FairseqKDError(f"{dst} would overwrite its input checkpoint")
        strip(read_checkpoint(src), dst)
        print(f"{dst}: {os.path.getsize(dst)} bytes (input checkpoint: {os.path.getsize(src)} bytes)")


def main(argv=None):
    p = argparse.ArgumentParser(prog="fairseq-kd-compress", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", nargs="+")
    p.add_argument("--output", required=True)
    p.add_argument("--sparse", action="store_true", help="store pruned matrices as bitmask + nonzero values")
    p.add_argument("--int8", action="store_true", help="store matrices as int8 with a scale per row; decode with int8 kernels")
    p.add_argument("--strip", action="store_true", help="only drop the optimizer state: a dense fp32 fairseq checkpoint")
    args = p.parse_args(argv)
    if args.strip == (args.sparse or args.int8):
        raise FairseqKDError("choose --sparse, --int8 or both, or --strip alone")
    if args.strip:
        return strip_all(args.checkpoint, args.output)
    if len(args.checkpoint) > 1:
        raise FairseqKDError("--sparse/--int8 take one checkpoint (several only with --strip)")
    args.checkpoint = args.checkpoint[0]
    if os.path.abspath(args.output) == os.path.abspath(args.checkpoint):
        raise FairseqKDError("--output must not overwrite the input checkpoint")
    output_file(args.output, "--output")
    state = read_checkpoint(args.checkpoint)
    payload = compression.compress_state(state, args.sparse, args.int8)
    compression.save_compressed(payload, args.output)
    dense = dense_fp32_bytes(state)
    size = os.path.getsize(args.output)
    print(f"dense fp32 weights: {dense} bytes; input checkpoint: {os.path.getsize(args.checkpoint)} bytes; "
          f"{args.output}: {size} bytes ({size / dense:.3f}x the dense fp32 weights)")


if __name__ == "__main__":
    main()
