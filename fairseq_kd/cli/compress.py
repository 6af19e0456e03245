"""fairseq-kd-compress: a small file from a (pruned) checkpoint: sparse storage and/or int8 weights, xz-compressed.

    fairseq-kd-compress CKPT --output SMALL.pt [--sparse] [--int8]

Prints the size of the dense fp32 weights (what the model needs, without optimizer state), the input
checkpoint's size, the compressed size and the ratios. Decode SMALL.pt with fairseq-kd-speed (which also
re-checks BLEU with --ref); with --int8 it runs torch's int8 kernels on CPU. Format: fairseq_kd.compression.
"""
import argparse
import os

from .. import compression
from ..errors import FairseqKDError
from ..checkpoint_compat import read_checkpoint


def dense_fp32_bytes(state):
    return sum(t.numel() * 4 for t in state["model"].values() if t.is_floating_point())


def main(argv=None):
    p = argparse.ArgumentParser(prog="fairseq-kd-compress", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("--output", required=True)
    p.add_argument("--sparse", action="store_true", help="store pruned matrices as bitmask + nonzero values")
    p.add_argument("--int8", action="store_true", help="store matrices as int8 with a scale per row; decode with int8 kernels")
    args = p.parse_args(argv)
    if not (args.sparse or args.int8):
        raise FairseqKDError("choose --sparse, --int8 or both")
    if os.path.abspath(args.output) == os.path.abspath(args.checkpoint):
        raise FairseqKDError("--output must not overwrite the input checkpoint")
    state = read_checkpoint(args.checkpoint)
    payload = compression.compress_state(state, args.sparse, args.int8)
    compression.save_compressed(payload, args.output)
    dense = dense_fp32_bytes(state)
    size = os.path.getsize(args.output)
    print(f"dense fp32 weights: {dense} bytes; input checkpoint: {os.path.getsize(args.checkpoint)} bytes; "
          f"{args.output}: {size} bytes ({size / dense:.3f}x the dense fp32 weights)")


if __name__ == "__main__":
    main()
