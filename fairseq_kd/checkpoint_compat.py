"""Make fairseq 0.12 checkpoints load under torch >= 2.6 without switching off `weights_only`.

torch 2.6 made `torch.load(..., weights_only=True)` the default. fairseq 0.12 checkpoints pickle a few
plain Python objects besides tensors (an `argparse.Namespace` of training args, numpy scalars in
older files), so `fairseq-generate`, `fairseq-interactive` and teacher loading fail with
"Unsupported global". Importing `fairseq_kd` (which `--user-dir fairseq_kd` does) adds exactly these
globals to torch's allow-list; every other global is still refused by torch's safe unpickler.
"""
import argparse
import os

import numpy as np
import torch

from .errors import FairseqKDError

FAIRSEQ_CHECKPOINT_GLOBALS = [argparse.Namespace]


def _numpy_scalar_globals():
    """numpy scalars/dtypes as pickled by numpy 1.x (`numpy.core`) and 2.x (`numpy._core`)."""
    found = [np.dtype]
    for mod_name in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            module = __import__(mod_name, fromlist=["scalar"])
        except ImportError:
            continue
        found.append(module.scalar)
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25: one class per dtype
    if dtypes is not None:
        found += [getattr(dtypes, n) for n in ("Float64DType", "Float32DType", "Int64DType", "Int32DType")
                  if hasattr(dtypes, n)]
    return found


def allow_fairseq_checkpoint_globals():
    add = getattr(torch.serialization, "add_safe_globals", None)
    if add is None:  # torch < 2.4 loads with weights_only=False by default: nothing to do
        return
    add(FAIRSEQ_CHECKPOINT_GLOBALS + _numpy_scalar_globals())


def read_checkpoint(path: str, what: str = "checkpoint"):
    """A fairseq checkpoint as fairseq loads it (cfg upgraded), or one clear error naming `what`."""
    from fairseq import checkpoint_utils

    if not os.path.isfile(path):
        raise FairseqKDError(f"{what} not found: {path}")
    try:
        state = checkpoint_utils.load_checkpoint_to_cpu(path)
    except Exception as e:  # truncated file, not a torch file, unknown pickled global
        raise FairseqKDError(f"{what} {path} could not be read ({type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''})") from e
    if not isinstance(state, dict) or "model" not in state:
        raise FairseqKDError(f"{what} {path} is not a fairseq checkpoint (no 'model' entry)")
    return state


def plain_cfg(cfg):
    """The OmegaConf config fairseq's loader makes, back as the plain containers fairseq saves."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=False) if OmegaConf.is_config(cfg) else cfg
