"""Offline teacher: the teacher's top-k log-probabilities per target token, stored once.

Layout of a cache directory (all numpy .npy files, memory-mapped when read):
    offsets.npy   int64 [N + 1]    rows of sample id i are offsets[i]:offsets[i+1] (one row per target token, EOS included)
    ids.npy       int16/int32 [R, k]  top-k token ids of each row, most probable first
    values.npy    float16/float32 [R, k]  their log-probabilities at T = 1 (log of the ensemble's mean probability)
    meta.json     k, dictionary hash and size, subset name, size and target-length hash, dtype, and the
                  identity of every teacher checkpoint (fairseq_kd.provenance)

How a temperature is applied offline: the k stored entries are renormalised,
    p_k^(T)(v) = exp(l_v / T) / sum_{u in top-k} exp(l_u / T),   l = stored log-probability,
and the KL runs over those k entries against the student's full-vocabulary tempered log-probabilities
gathered at the k ids. With k = |V| this is exactly the online KL (log_softmax only shifts logits by a
constant). The alternative, spreading the remaining mass 1 - sum_k p over the other |V| - k words, is
not implemented: with k = 8 the renormalised form is what pytorch/translate and Tan et al. 2019 use.
"""
import hashlib
import json
import os

import numpy as np
import torch

from .errors import FairseqKDError
from .outputs import atomic_write_text
from .provenance import check_fresh

FORMAT_VERSION = 2  # 2: teachers are identities (path, size, mtime, model hash), not paths


def dictionary_hash(dictionary) -> str:
    return hashlib.md5("\n".join(dictionary.symbols).encode("utf-8")).hexdigest()


def sizes_hash(sizes) -> str:
    return hashlib.md5(np.asarray(sizes, dtype=np.int64).tobytes()).hexdigest()


def id_dtype(vocab_size: int):
    return np.int16 if vocab_size <= np.iinfo(np.int16).max else np.int32


def write_cache(destdir: str, items, n_rows: int, k: int, meta: dict, value_dtype):
    """Stream (sample id, (ids L x k, log-probs L x k)) items, in id order, into the .npy files."""
    n = meta["n_sentences"]
    tmp = os.path.join(destdir, "tmp-")
    ids = np.lib.format.open_memmap(tmp + "ids.npy", mode="w+", dtype=id_dtype(meta["dict_size"]), shape=(n_rows, k))
    values = np.lib.format.open_memmap(tmp + "values.npy", mode="w+", dtype=value_dtype, shape=(n_rows, k))
    offsets = np.zeros(n + 1, dtype=np.int64)
    row = 0
    for sid, (item_ids, item_values) in items:
        length = item_ids.shape[0]
        ids[row:row + length] = item_ids.numpy()
        values[row:row + length] = item_values.numpy()
        row += length
        offsets[sid + 1] = row
    ids.flush()
    values.flush()
    del ids, values
    np.save(tmp + "offsets.npy", offsets)
    for name in ("ids.npy", "values.npy", "offsets.npy"):
        os.replace(tmp + name, os.path.join(destdir, name))
    # written last: its presence means complete
    atomic_write_text(os.path.join(destdir, "meta.json"),
                      json.dumps(dict(meta, format_version=FORMAT_VERSION, n_rows=n_rows, k=k), indent=1))


class TeacherTopKCache:
    def __init__(self, path: str):
        meta_path = os.path.join(path, "meta.json")
        if not os.path.isfile(meta_path):
            raise FairseqKDError(f"no complete top-k cache in {path} (meta.json missing): run fairseq-kd-dump-topk")
        with open(meta_path) as f:
            self.meta = json.load(f)
        if self.meta.get("format_version") != FORMAT_VERSION:
            raise FairseqKDError(f"top-k cache {path} has format {self.meta.get('format_version')}, "
                                 f"this fairseq_kd reads {FORMAT_VERSION}: rebuild it")
        self.path = path
        self.k = self.meta["k"]
        self.offsets = np.load(os.path.join(path, "offsets.npy"))
        self.ids = np.load(os.path.join(path, "ids.npy"), mmap_mode="r")
        self.values = np.load(os.path.join(path, "values.npy"), mmap_mode="r")

    def check_matches(self, dictionary, subset: str, target_sizes, allow_stale: bool = False):
        """The cache must be this subset's, over this dictionary, from teachers that have not changed since."""
        m = self.meta
        check_fresh(m.get("teachers"), f"top-k cache {self.path}", allow_stale)
        if m["dict_hash"] != dictionary_hash(dictionary) or m["dict_size"] != len(dictionary):
            raise FairseqKDError(f"top-k cache {self.path} was made with another target dictionary "
                                 f"({m['dict_size']} symbols, hash {m['dict_hash'][:8]}; the task has "
                                 f"{len(dictionary)} symbols, hash {dictionary_hash(dictionary)[:8]})")
        if m["n_sentences"] != len(target_sizes) or m["target_sizes_hash"] != sizes_hash(target_sizes):
            raise FairseqKDError(f"top-k cache {self.path} was made for subset '{m['subset']}' of "
                                 f"{m['n_sentences']} sentences, which is not the '{subset}' subset being trained on "
                                 f"({len(target_sizes)} sentences, or other target lengths)")

    def lookup(self, sample_ids, target, padding_idx):
        """Log-probs (B x T x k float) and ids (B x T x k long) for a batch of right-padded targets;
        padding rows are id 0 with log-prob 0 (the caller masks them)."""
        bsz, tlen = target.shape
        present = target.ne(padding_idx).cpu()
        lengths = present.sum(dim=1).numpy()
        sids = sample_ids.cpu().numpy()
        starts, ends = self.offsets[sids], self.offsets[sids + 1]
        bad = np.nonzero(ends - starts != lengths)[0]
        if len(bad):
            b = bad[0]
            raise FairseqKDError(f"top-k cache {self.path}: sample {sids[b]} has {ends[b] - starts[b]} cached tokens "
                                 f"but {lengths[b]} target tokens; the cache belongs to other data")
        # rows of every present token, in batch-row order (targets are right-padded: tokens are a prefix)
        rows = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths) + np.arange(lengths.sum())
        ids = torch.zeros(bsz, tlen, self.k, dtype=torch.long)
        values = torch.zeros(bsz, tlen, self.k, dtype=torch.float32)
        ids[present] = torch.from_numpy(self.ids[rows].astype(np.int64))
        values[present] = torch.from_numpy(self.values[rows].astype(np.float32))
        return values.to(target.device), ids.to(target.device)


def tempered_topk_probs(log_probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """p_k^(T): the k stored entries renormalised at temperature T."""
    return torch.softmax(log_probs.float() / temperature, dim=-1)
