"""fairseq-kd-average: the average of several checkpoints of one model, as fairseq's
scripts/average_checkpoints.py makes it (that script is not in fairseq's wheel).

    fairseq-kd-average SAVE_DIR --last 5 --output SAVE_DIR/checkpoint_averaged.pt   the last 5 epoch checkpoints
    fairseq-kd-average A.pt B.pt C.pt --output AVG.pt                              these checkpoints

SAVE_DIR's epoch checkpoints are fairseq-train's checkpoint<EPOCH>.pt (kept with --keep-last-epochs N). When
training stopped inside an epoch (--stop-time-hours, --max-update), its final weights are only in checkpoint_last.pt:
that file then counts as the newest of the last N (it is used when it holds more updates than the newest epoch
checkpoint). Every
floating-point tensor is the mean of the inputs' (computed in float64, stored in the input's dtype); any other
tensor must be the same in every input. The output is the first input with its weights replaced and without its
optimizer state (an averaged model is for decoding, not for resuming), written atomically. Inputs of different
models (other parameter names or shapes) are refused.
"""
import argparse
import os
import re

from ..checkpoint_compat import plain_cfg, read_checkpoint
from ..errors import FairseqKDError
from ..outputs import atomic_path, output_file

EPOCH_CHECKPOINT = re.compile(r"^checkpoint(\d+)\.pt$")


def num_updates(path: str) -> int:
    """The updates a fairseq checkpoint was saved after (its optimizer history), read without its tensors' data."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return int(state["optimizer_history"][-1]["num_updates"])
    except Exception as e:
        raise FairseqKDError(f"{path} could not be read as a fairseq checkpoint ({type(e).__name__})") from e


def averaging_candidates(save_dir: str):
    """The checkpoints that hold `save_dir`'s last epochs, oldest first: checkpoint<EPOCH>.pt in epoch order, then
    checkpoint_last.pt when it is newer than all of them (training stopped inside an epoch)."""
    if not os.path.isdir(save_dir):
        raise FairseqKDError(f"with --last, the input is a fairseq-train save directory: {save_dir} is not a directory")
    epochs = sorted(int(m.group(1)) for m in map(EPOCH_CHECKPOINT.match, os.listdir(save_dir)) if m)
    paths = [os.path.join(save_dir, f"checkpoint{e}.pt") for e in epochs]
    last = os.path.join(save_dir, "checkpoint_last.pt")
    if paths and os.path.isfile(last) and num_updates(last) > num_updates(paths[-1]):
        paths.append(last)
    return paths


def last_epoch_checkpoints(save_dir: str, n: int):
    """The paths of the last `n` checkpoints of `save_dir` (averaging_candidates), oldest first."""
    if n < 1:
        raise FairseqKDError(f"--last must be at least 1 (got {n})")
    paths = averaging_candidates(save_dir)
    if len(paths) < n:
        raise FairseqKDError(f"{save_dir} has {len(paths)} epoch checkpoints (checkpoint<EPOCH>.pt, and "
                             f"checkpoint_last.pt when newer), --last {n} needs that many (train with --keep-last-epochs N)")
    return paths[-n:]


def average_states(paths):
    """The first checkpoint's state with the mean of all the checkpoints' weights."""
    import torch

    first = read_checkpoint(paths[0])
    names = list(first["model"])
    sums = {k: v.double() if v.is_floating_point() else v for k, v in first["model"].items()}
    for path in paths[1:]:
        model = read_checkpoint(path)["model"]
        if set(model) != set(names):
            diff = sorted(set(model) ^ set(names))
            raise FairseqKDError(f"{path} is not a checkpoint of the same model as {paths[0]}: parameter names differ "
                                 f"({', '.join(diff[:3])}{', ...' if len(diff) > 3 else ''})")
        for k in names:
            if model[k].shape != sums[k].shape:
                raise FairseqKDError(f"{path} is not a checkpoint of the same model as {paths[0]}: {k} is "
                                     f"{tuple(model[k].shape)}, not {tuple(sums[k].shape)}")
            if sums[k].is_floating_point():
                sums[k] = sums[k] + model[k].double()
            elif not torch.equal(sums[k], model[k]):
                raise FairseqKDError(f"{path}: the non-float tensor {k} differs from {paths[0]}'s, it cannot be averaged")
    first["model"] = {k: (sums[k] / len(paths)).to(first["model"][k].dtype) if sums[k].is_floating_point() else sums[k]
                      for k in names}
    first.pop("last_optimizer_state", None)
    first["cfg"] = plain_cfg(first.get("cfg"))
    return first


def main(argv=None):
    import torch

    p = argparse.ArgumentParser(prog="fairseq-kd-average", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="checkpoints, or one save directory with --last")
    p.add_argument("--last", type=int, default=None, help="average the last N epoch checkpoints of the save directory "
                   "(checkpoint_last.pt the newest when training stopped inside an epoch)")
    p.add_argument("--count", action="store_true", help="with a save directory: print how many checkpoints --last "
                   "can average, and exit")
    p.add_argument("--output", help="the averaged checkpoint to write")
    p.add_argument("--force", action="store_true", help="replace --output if it exists")
    args = p.parse_args(argv)
    if args.count:
        if len(args.inputs) != 1:
            raise FairseqKDError("--count takes one input, the save directory")
        print(len(averaging_candidates(args.inputs[0])))
        return
    if not args.output:
        raise FairseqKDError("give --output, the averaged checkpoint to write")
    if args.last is not None:
        if len(args.inputs) != 1:
            raise FairseqKDError("--last takes one input, the save directory")
        paths = last_epoch_checkpoints(args.inputs[0], args.last)
    else:
        paths = args.inputs
        if len(paths) < 2:
            raise FairseqKDError("give at least two checkpoints (or a save directory with --last N)")
    output_file(args.output, "--output")
    if any(os.path.abspath(args.output) == os.path.abspath(x) for x in paths):
        raise FairseqKDError(f"--output {args.output} would overwrite one of its inputs")
    if os.path.exists(args.output) and not args.force:
        raise FairseqKDError(f"--output {args.output} exists (--force replaces it)")
    state = average_states(paths)
    with atomic_path(args.output) as tmp:
        torch.save(state, tmp)
    print(f"wrote {args.output}: the average of {len(paths)} checkpoints ({', '.join(os.path.basename(x) for x in paths)})")


if __name__ == "__main__":
    main()
