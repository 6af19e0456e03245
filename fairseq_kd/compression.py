"""Compressed checkpoints: sparse storage of pruned weights and/or int8 weights, xz-compressed on disk.

File: the xz (lzma) compression of a torch.save'd dict
    {"fairseq_kd_compressed": FORMAT_VERSION, "cfg": <fairseq cfg as plain containers>,
     "int8": bool, "sparse": bool, "tensors": {name: entry}}
with one entry per model tensor:
    {"dense": fp32 tensor}                                    small tensors, and anything not compressible
    {"shape", "bitmask": uint8 packed bits of the nonzeros, "values": the nonzero values}     --sparse
    {"shape", ["bitmask"], "qvalues": int8, "scale": fp32 per row}                            --int8
int8 is symmetric per output row: q = round(w / s_r), s_r = max_j |w_rj| / 127, so zeros stay zeros.
Loading rebuilds the fp32 model (exactly the stored values for sparse-only); with int8 it then swaps
nn.Linear / nn.LSTM for torch's dynamically quantized int8 modules, so CPU decoding runs int8 kernels.
Importing fairseq_kd (`--user-dir fairseq_kd`) makes fairseq's own loader read these files, so
`fairseq-generate --path SMALL.pt` decodes them directly (see install_fairseq_loader).
"""
import io
import lzma
import os
from typing import Dict

import numpy as np
import torch
import torch.nn as nn

from .checkpoint_compat import plain_cfg
from .errors import FairseqKDError, state_dict_detail
from .outputs import atomic_path

FORMAT_VERSION = 1
XZ_MAGIC = b"\xfd7zXZ\x00"
MIN_SPARSITY = 0.3  # below this a bitmask costs more than it saves


def is_compressed(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(6) == XZ_MAGIC


def _pack(mask: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.packbits(mask.flatten().numpy().astype(np.uint8)))


def _unpack(bits: torch.Tensor, shape) -> torch.Tensor:
    n = int(np.prod(shape))
    return torch.from_numpy(np.unpackbits(bits.numpy())[:n].astype(bool)).view(*shape)


def row_scales(w: torch.Tensor) -> torch.Tensor:
    rows = w.reshape(w.size(0), -1)
    return (rows.abs().amax(dim=1) / 127.0).clamp_min(1e-12)


def quantize_rows(w: torch.Tensor):
    scale = row_scales(w)
    q = torch.round(w.reshape(w.size(0), -1) / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q.view_as(w), scale


def encode_tensor(w: torch.Tensor, sparse: bool, int8: bool) -> Dict:
    w = w.detach().float().cpu()
    if w.dim() < 2:
        return {"dense": w}
    entry = {"shape": tuple(w.shape)}
    nonzero = w.ne(0)
    use_mask = sparse and 1.0 - nonzero.float().mean().item() >= MIN_SPARSITY
    if int8:
        q, scale = quantize_rows(w)
        entry["scale"] = scale
        entry["qvalues"] = q[nonzero] if use_mask else q
    elif use_mask:
        entry["values"] = w[nonzero]
    else:
        return {"dense": w}
    if use_mask:
        entry["bitmask"] = _pack(nonzero)
    return entry


def decode_tensor(entry: Dict) -> torch.Tensor:
    if "dense" in entry:
        return entry["dense"]
    shape = entry["shape"]
    mask = _unpack(entry["bitmask"], shape) if "bitmask" in entry else None
    if "qvalues" in entry:
        q = torch.zeros(shape, dtype=torch.float32)
        if mask is not None:
            q[mask] = entry["qvalues"].float()
        else:
            q = entry["qvalues"].float().view(shape)
        return (q.reshape(shape[0], -1) * entry["scale"][:, None]).view(shape)
    w = torch.zeros(shape, dtype=torch.float32)
    w[mask] = entry["values"]
    return w


def compress_state(state, sparse: bool, int8: bool) -> Dict:
    return {"fairseq_kd_compressed": FORMAT_VERSION, "cfg": plain_cfg(state.get("cfg")), "int8": int8, "sparse": sparse,
            "tensors": {n: encode_tensor(t, sparse, int8) for n, t in state["model"].items()}}


def save_compressed(payload: Dict, path: str):
    buf = io.BytesIO()
    torch.save(payload, buf)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(lzma.compress(buf.getvalue(), preset=9))


def load_compressed(path: str) -> Dict:
    try:
        with open(path, "rb") as f:
            raw = lzma.decompress(f.read())
        payload = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except (lzma.LZMAError, EOFError, RuntimeError) as e:
        raise FairseqKDError(f"compressed checkpoint {path} could not be read ({e})") from e
    version = payload.get("fairseq_kd_compressed") if isinstance(payload, dict) else None
    if version != FORMAT_VERSION:
        raise FairseqKDError(f"{path} is a compressed checkpoint of format {version}; this fairseq_kd reads format "
                             f"{FORMAT_VERSION}: compress the original checkpoint again")
    return payload


def dense_state_dict(payload: Dict) -> Dict[str, torch.Tensor]:
    return {n: decode_tensor(e) for n, e in payload["tensors"].items()}


def parameter_counts(model: nn.Module):
    """Total and nonzero parameters of a dense model, a tied tensor once (as model.parameters() gives it, and as
    fairseq-kd-speed counts a checkpoint): the file stores a tied embedding under each of its names."""
    params = list(model.parameters())
    return sum(p.numel() for p in params), sum(int(torch.count_nonzero(p)) for p in params)


def quantize_for_cpu(model: nn.Module) -> nn.Module:
    """int8 dynamic quantization: per-channel for nn.Linear, torch's default for nn.LSTM.

    The projections inside fairseq's MultiheadAttention stay fp32 (dequantized from the file's int8 values): its
    fast path hands their `.weight` and `.bias` tensors to F.multi_head_attention_forward, which a quantized module
    does not have. A transformer's int8 kernels are then its feed-forward layers; CTranslate2 runs all of it in int8
    (fairseq-kd-export --quantization int8)."""
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

    attention = {f"{name}.{child}" if name else child for name, m in model.named_modules()
                 if type(m).__name__ == "MultiheadAttention" for child, _ in m.named_children()}
    spec = {name: per_channel_dynamic_qconfig for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and name not in attention}
    spec.update({name: default_dynamic_qconfig for name, m in model.named_modules() if isinstance(m, nn.LSTM)})
    return quantize_dynamic(model, spec, dtype=torch.qint8)


def model_from_payload(payload: Dict, cfg, task, path: str, quantize: bool = True):
    """The model a compressed payload describes, built by `task`, eval mode, int8 modules if it is int8 (and
    `quantize`)."""
    model = task.build_model(cfg.model)
    try:
        model.load_state_dict(dense_state_dict(payload), strict=True)
    except RuntimeError as e:
        raise FairseqKDError(f"{path} does not fit this task's model or dictionaries ({state_dict_detail(e)})") from e
    model.eval()
    return quantize_for_cpu(model) if payload["int8"] and quantize else model


def payload_cfg(payload: Dict, arg_overrides=None):
    from fairseq.dataclass.utils import overwrite_args_by_name
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(payload["cfg"], flags={"allow_objects": True})  # model cfg may be a Namespace
    if arg_overrides:
        overwrite_args_by_name(cfg, arg_overrides)
    return cfg


def load_model(path: str, task):
    """(model ready for CPU inference, facts) from a compressed checkpoint."""
    payload = load_compressed(path)
    model = model_from_payload(payload, payload_cfg(payload), task, path, quantize=False)
    total, nonzero = parameter_counts(model)  # before int8 modules hide their weights from parameters()
    if payload["int8"]:
        model = quantize_for_cpu(model)
    return model, {"params_total": total, "params_nonzero": nonzero, "int8": payload["int8"], "sparse": payload["sparse"]}


def load_for_fairseq(path: str, task=None, arg_overrides=None):
    """(model, cfg, task) for one compressed file, as fairseq's load_model_ensemble_and_task gives them."""
    from fairseq import tasks

    payload = load_compressed(path)
    cfg = payload_cfg(payload, arg_overrides)
    if task is None:
        task = tasks.setup_task(cfg.task, from_checkpoint=True)
    return model_from_payload(payload, cfg, task, path), cfg, task


def install_fairseq_loader():
    """Let fairseq's own checkpoint loading (fairseq-generate, fairseq-interactive, hub models) read compressed
    files: `checkpoint_utils.load_model_ensemble_and_task` loads them here and every other file as before."""
    from fairseq import checkpoint_utils

    original = checkpoint_utils.load_model_ensemble_and_task
    if getattr(original, "fairseq_kd_loader", False):
        return

    def load_model_ensemble_and_task(filenames, arg_overrides=None, task=None, strict=True, suffix="", num_shards=1,
                                     state=None):
        compressed = [state is None and os.path.isfile(f) and is_compressed(f) for f in filenames]
        if not any(compressed):
            return original(filenames, arg_overrides, task, strict, suffix, num_shards, state)
        ensemble, cfg = [], None
        for f, is_small in zip(filenames, compressed):
            if is_small:
                model, cfg, task = load_for_fairseq(f, task, arg_overrides)
                ensemble.append(model)
            else:
                models, cfg, task = original([f], arg_overrides, task, strict, suffix, num_shards)
                ensemble += models
        return ensemble, cfg, task

    load_model_ensemble_and_task.fairseq_kd_loader = True
    checkpoint_utils.load_model_ensemble_and_task = load_model_ensemble_and_task
