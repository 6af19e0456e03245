"""Decoding plumbing shared by the tools (speed, distill): fairseq's own argument parser, task,
checkpoint loading and SequenceGenerator, with the batches built the way fairseq-generate builds them
(sorted by length, then cut by sentences or tokens)."""
import argparse
import copy
import os
import sys
from typing import List, Optional, Sequence

import torch

from fairseq import checkpoint_utils, options, tasks, utils
from fairseq.data import data_utils
from fairseq.dataclass.utils import convert_namespace_to_omegaconf

from .errors import FairseqKDError, state_dict_detail


def generation_cfg(argv: Sequence[str]):
    """fairseq-generate's configuration from a command line (data dir, --path, --gen-subset, ...)."""
    parser = options.get_generation_parser()
    args = options.parse_args_and_arch(parser, list(argv))
    return convert_namespace_to_omegaconf(args)


def tool_options(argv: Optional[Sequence[str]], own: argparse.ArgumentParser, doc: str):
    """A tool's own options first (they may shadow fairseq's, e.g. `--beam 1 5`); the rest is for fairseq's
    generation parser. Returns None after printing the help. Applies --threads when the tool has it."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print(doc)
        own.print_help()
        return None
    ours, rest = own.parse_known_args(argv)
    if getattr(ours, "threads", None):
        torch.set_num_threads(ours.threads)
    return ours, rest


def check_checkpoints(paths: Sequence[str]):
    for p in paths:
        if not os.path.isfile(p):
            raise FairseqKDError(f"checkpoint not found: {p}")


def setup(cfg):
    """The task (with its dictionaries) of a generation config, after importing --user-dir."""
    utils.import_user_module(cfg.common)
    task = tasks.setup_task(cfg.task)
    return task


def checkpoint_paths(cfg) -> List[str]:
    """The checkpoints of --path A[:B...], as fairseq splits them."""
    return utils.split_paths(cfg.common_eval.path)


def load_ensemble(cfg, task, paths: Optional[Sequence[str]] = None):
    """Models for decoding (files written by fairseq-kd-compress too), and the saved config."""
    paths = list(paths) if paths is not None else checkpoint_paths(cfg)
    check_checkpoints(paths)
    try:  # fairseq's loader, which also reads compressed files once fairseq_kd is imported
        models, saved_cfg = checkpoint_utils.load_model_ensemble(paths, task=task)
    except RuntimeError as e:
        if "size mismatch" in str(e):
            raise FairseqKDError(f"{':'.join(paths)} does not fit this data's dictionaries ({state_dict_detail(e)})") from e
        raise
    return prepare_for_inference(models, cfg), saved_cfg


def prepare_for_inference(models, cfg):
    """As fairseq-generate: fp16 if asked, on the GPU unless --cpu, eval mode."""
    use_cuda = torch.cuda.is_available() and not cfg.common.cpu
    for m in models:
        if cfg.common.fp16:
            m.half()
        if use_cuda:
            m.cuda()
        m.prepare_for_inference_(cfg)
    return models


def load_subset(task, cfg, subset: str):
    try:
        task.load_dataset(subset)
    except FileNotFoundError as e:
        raise FairseqKDError(f"subset '{subset}' not found in {cfg.task.data} ({e})") from e
    return task.dataset(subset)


def length_sorted_batches(dataset, indices, batch_size: Optional[int] = None, max_tokens: Optional[int] = None):
    """Batches of sample ids, sorted by length as fairseq-generate sorts them."""
    ordered = dataset.ordered_indices()
    if indices is not None:
        keep = set(int(i) for i in indices)
        ordered = [i for i in ordered if int(i) in keep]
    return data_utils.batch_by_size(
        torch.as_tensor(ordered, dtype=torch.int64).numpy(), dataset.num_tokens,
        max_tokens=max_tokens, max_sentences=batch_size)


def collate(dataset, batch_ids, use_cuda: bool):
    sample = dataset.collater([dataset[i] for i in batch_ids])
    return utils.move_to_cuda(sample) if use_cuda else sample


def build_generator(task, models, cfg, beam: int, nbest: int = 1):
    """fairseq's SequenceGenerator for `beam` and `nbest`, the other options from cfg.generation (left as it is:
    rows of one run share the config)."""
    gen_cfg = copy.deepcopy(cfg.generation)
    gen_cfg.beam, gen_cfg.nbest = beam, nbest
    return task.build_generator(models, gen_cfg)


def ids_string(dictionary, ids) -> str:
    """dictionary.string(ids) with its defaults (eos and bos left out, out-of-range ids as <unk>) for a 1-D tensor or
    list, without its per-token Python overhead: fairseq-kd-distill calls it three times a training sentence."""
    symbols, unk = dictionary.symbols, dictionary.unk_word
    n, skip = len(symbols), {dictionary.eos(), dictionary.bos()}
    return " ".join(symbols[i] if i < n else unk for i in (ids.tolist() if torch.is_tensor(ids) else ids)
                    if i not in skip)


def detokenizer(cfg):
    """Subword string -> text, with --post-process (e.g. sentencepiece) as fairseq-generate's D lines; the setting
    read once (an OmegaConf lookup costs more than the detokenization itself), for callers with many strings."""
    post = cfg.common_eval.post_process
    return (lambda pieces: data_utils.post_process(pieces, post)) if post else (lambda pieces: pieces)


def detokenize(pieces: str, cfg) -> str:
    """One subword string -> text (see detokenizer)."""
    return detokenizer(cfg)(pieces)


def hypothesis_text(task, cfg, hypo) -> (str, str):
    """(subword string, detokenized string) of one hypothesis, as fairseq-generate prints H and D lines."""
    pieces = ids_string(task.target_dictionary, hypo["tokens"])
    return pieces, detokenize(pieces, cfg)


def subset_ids(dataset, max_sentences: Optional[int]) -> List[int]:
    n = len(dataset)
    return list(range(n if not max_sentences else min(n, max_sentences)))
