"""fairseq-kd-prune: one-shot magnitude pruning of a checkpoint, without retraining.

    fairseq-kd-prune CKPT --prune-ratio 0.8 --prune-scheme class-blind --output PRUNED.pt [--prune-biases] [--prune-exclude REGEX]

Zeroes the chosen fraction of the prunable weights (fairseq_kd.pruning) and prints the sparsity per class.
The output is an ordinary fairseq checkpoint (optimizer state dropped): decode it with fairseq-generate
to measure the drop before retraining, or retrain it with
`--task translation_prune --finetune-from-model PRUNED.pt --prune-ratio 0.8`.
"""
import argparse
import os

import torch

from .. import pruning
from ..errors import FairseqKDError
from ..checkpoint_compat import plain_cfg, read_checkpoint
from ..outputs import atomic_path, output_file


def prune_state(state, ratio, scheme, prune_biases=False, exclude=None):
    weights = pruning.prunable(state["model"].items(), prune_biases, exclude)
    masks = pruning.compute_masks(weights, ratio, scheme)
    pruning.apply_masks(state["model"], masks)
    state["last_optimizer_state"] = None
    return masks


def main(argv=None):
    p = argparse.ArgumentParser(prog="fairseq-kd-prune", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("--prune-ratio", type=float, required=True)
    p.add_argument("--prune-scheme", default="class-blind")
    p.add_argument("--prune-biases", action="store_true")
    p.add_argument("--prune-exclude", default="", metavar="REGEX", help="weights whose name matches stay dense")
    p.add_argument("--output", required=True)
    args = p.parse_args(argv)
    pruning.check_ratio(args.prune_ratio)
    pruning.check_scheme(args.prune_scheme)
    pruning.check_exclude(args.prune_exclude)
    if os.path.abspath(args.output) == os.path.abspath(args.checkpoint):
        raise FairseqKDError("--output must not overwrite the input checkpoint")
    output_file(args.output, "--output")
    state = read_checkpoint(args.checkpoint)
    masks = prune_state(state, args.prune_ratio, args.prune_scheme, args.prune_biases, args.prune_exclude)
    state["cfg"] = plain_cfg(state.get("cfg"))  # fairseq's loader made it an OmegaConf object
    with atomic_path(args.output) as tmp:
        torch.save(state, tmp)
    print(pruning.sparsity_table(masks))
    print(f"wrote {args.output} ({os.path.getsize(args.output)} bytes), scheme {args.prune_scheme}")


if __name__ == "__main__":
    main()
