"""Where a cache of teacher outputs came from, and whether that teacher has changed since.

A top-k cache (fairseq-kd-dump-topk) and a Seq-KD corpus (fairseq-kd-distill) record, for every teacher
checkpoint that made them, its identity:

    {"path": absolute path, "size": bytes, "mtime": seconds, "model_sha256": hash of the model state}

The hash covers the model's parameters (names, dtypes, shapes and values), not the optimizer state or the
training counters, so a checkpoint that is copied, touched or re-saved with the same weights is the same
teacher. A check first compares size and mtime (free), and hashes the file again only when they differ.

A teacher checkpoint that is gone cannot be checked: that is a warning, since an offline cache exists so
that the teacher is not needed any more. A teacher whose weights changed (retrained in place, e.g. a
student retrained before its self_kd cache is reused) is an error, or a warning with --allow-stale-cache.
"""
import hashlib
import logging
import os
from typing import Dict, List

import torch

from . import checkpoint_compat
from .errors import FairseqKDError

logger = logging.getLogger(__name__)


def model_state_hash(model_state: Dict) -> str:
    digest = hashlib.sha256()
    for name in sorted(model_state):
        value = model_state[name]
        digest.update(name.encode("utf-8"))
        if torch.is_tensor(value):
            tensor = value.detach().cpu().contiguous()
            digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode("utf-8"))
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy())  # the tensor's own buffer, not a copy
        else:
            digest.update(repr(value).encode("utf-8"))
    return digest.hexdigest()


def checkpoint_identity(path: str, state=None) -> Dict:
    """The identity of a checkpoint file; `state` is its already-read content (read here otherwise)."""
    if state is None:
        state = checkpoint_compat.read_checkpoint(path, what="teacher checkpoint")
    info = os.stat(path)
    return {"path": os.path.abspath(path), "size": info.st_size, "mtime": info.st_mtime,
            "model_sha256": model_state_hash(state["model"])}


def weights_only(identities: List[Dict]) -> List[Dict]:
    """What a resumable job pins: which weights made it (a copied or touched file does not matter)."""
    return [{"path": i["path"], "model_sha256": i["model_sha256"]} for i in identities]


def changed(identity: Dict):
    """None if the checkpoint still holds the recorded weights, else what happened to it."""
    path = identity["path"]
    if not os.path.isfile(path):
        return "gone"
    info = os.stat(path)
    if info.st_size == identity.get("size") and info.st_mtime == identity.get("mtime"):
        return None
    now = checkpoint_identity(path)["model_sha256"]
    if now == identity["model_sha256"]:
        return None
    return f"changed (model hash {identity['model_sha256'][:12]} then, {now[:12]} now)"


def check_fresh(identities: List[Dict], what: str, allow_stale: bool = False):
    """Refuse `what` (a cache) if a teacher that made it has changed since; warn if one is gone."""
    if not identities:
        raise FairseqKDError(f"{what} records no teacher checkpoints: it was made by an older fairseq_kd, "
                             f"rebuild it")
    for identity in identities:
        problem = changed(identity)
        if problem is None:
            continue
        if problem == "gone":
            logger.warning("%s was made by %s, which is gone: its freshness cannot be checked", what, identity["path"])
            continue
        message = (f"{what} is stale: teacher checkpoint {identity['path']} has {problem} since the cache was "
                   f"made; rebuild the cache, or pass --allow-stale-cache to use it anyway")
        if not allow_stale:
            raise FairseqKDError(message)
        logger.warning("%s (--allow-stale-cache)", message)
