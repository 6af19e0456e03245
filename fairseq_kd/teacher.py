"""The frozen teacher: one or more fairseq checkpoints, loaded once, checked against the task's
dictionaries, run under no_grad in eval mode, ensembled by averaging probabilities.

A `Teacher` is a plain Python object, not an `nn.Module`: it is never a submodule of the criterion
or the student, so it is never in the optimizer, never wrapped by DistributedDataParallel and never
in the student's checkpoint. It follows the student's device and dtype lazily.
"""
import logging
import os
from typing import Dict, List, Sequence

import torch
from torch import Tensor

from fairseq import checkpoint_utils, utils
from fairseq.data import Dictionary, data_utils

from . import checkpoint_compat
from .errors import FairseqKDError
from .losses import ensemble_probs
from .provenance import checkpoint_identity

logger = logging.getLogger(__name__)


def embedding_rows(model_state, side: str):
    """Rows of a side's embedding (or output projection) in a state dict: its dictionary's size."""
    for key in (f"{side}.embed_tokens.weight", f"{side}.output_projection.weight"):
        if key in model_state:
            return model_state[key].size(0)
    return None


def check_dictionaries(path: str, state, src_dict: Dictionary, tgt_dict: Dictionary):
    """The teacher must predict over the task's target vocabulary, symbol for symbol.

    Sizes come from the checkpoint's embedding matrices; symbols from the dictionaries of the data
    directory the teacher was trained on, when that directory is still readable.
    """
    for side, dictionary, lang in (("encoder", src_dict, "source"), ("decoder", tgt_dict, "target")):
        rows = embedding_rows(state["model"], side)
        if rows is not None and rows != len(dictionary):
            raise FairseqKDError(
                f"teacher {path} was trained with a {lang} dictionary of {rows} symbols, "
                f"the task's {lang} dictionary has {len(dictionary)}: distillation needs the same dictionaries")
    cfg = state.get("cfg")
    task_cfg = cfg.get("task") if cfg is not None else None
    data = task_cfg.get("data") if task_cfg is not None else None
    if not data:
        return
    data = str(data).split(":")[0]
    inferred = data_utils.infer_language_pair(data) if os.path.isdir(data) else (None, None)
    for i, (lang_key, dictionary, lang) in enumerate((("source_lang", src_dict, "source"),
                                                       ("target_lang", tgt_dict, "target"))):
        code = task_cfg.get(lang_key) or inferred[i]
        dict_path = os.path.join(data, f"dict.{code}.txt")
        if code is None or not os.path.isfile(dict_path):
            continue
        teacher_dict = Dictionary.load(dict_path)
        if teacher_dict.symbols != dictionary.symbols:
            first = next((i for i, (a, b) in enumerate(zip(teacher_dict.symbols, dictionary.symbols)) if a != b),
                         min(len(teacher_dict), len(dictionary)))
            raise FairseqKDError(
                f"teacher {path} uses {dict_path}, which differs from the task's {lang} dictionary "
                f"(first difference at index {first}): distillation needs the same dictionaries")


class Teacher:
    def __init__(self, models: Sequence[torch.nn.Module], paths: Sequence[str] = (), identities: Sequence[Dict] = ()):
        self.models = list(models)
        self.paths = list(paths)
        self.identities = list(identities)  # provenance.checkpoint_identity of each file (Teacher.load(identify=True))
        for m in self.models:
            # eval mode, and every call below under no_grad; its parameters keep requires_grad, which no optimizer
            # sees (the models are a list, not modules of the criterion). With no tensor requiring grad, torch runs a
            # linear layer on a non-contiguous 3-D input (fairseq's decoder features) as a batched matmul over a
            # broadcast weight instead of one product: fairseq-kd-distill decoded a transformer teacher at 910
            # instead of 1,330-1,400 tokens/s (beam 5, multi30k valid, 2026-12-06).
            m.eval()
            if getattr(getattr(m, "decoder", None), "adaptive_softmax", None) is not None:
                raise FairseqKDError("teachers with an adaptive softmax are not supported (their logits are not a full softmax)")

    @classmethod
    def load(cls, paths: str, task, identify: bool = False) -> "Teacher":
        """`identify`: also hash each checkpoint's weights (provenance), for the tools that write caches; a
        teacher used online in training needs no identity, and its start-up no extra pass over the weights."""
        files = [p for p in utils.split_paths(paths or "") if p]
        if not files:
            raise FairseqKDError("no teacher checkpoint given (--teacher-path PATH[:PATH...])")
        models, identities = [], []
        for path in files:
            state = checkpoint_compat.read_checkpoint(path, what="teacher checkpoint")
            check_dictionaries(path, state, task.source_dictionary, task.target_dictionary)
            if identify:
                identities.append(checkpoint_identity(path, state))
            loaded, _cfg, _task = checkpoint_utils.load_model_ensemble_and_task([path], task=task, state=state)
            models.extend(loaded)
            logger.info("teacher %s: %s, %d parameters", path, type(loaded[0]).__name__,
                        sum(p.numel() for p in loaded[0].parameters()))
        return cls(models, files, identities)

    def follow(self, like: torch.nn.Module):
        """Put every member on the student's device and floating dtype."""
        ref = next(like.parameters())
        for m in self.models:
            p = next(m.parameters())
            if p.device != ref.device or p.dtype != ref.dtype:
                m.to(device=ref.device, dtype=ref.dtype)

    @torch.no_grad()
    def logits(self, net_input) -> List[Tensor]:
        return [m(**net_input)[0] for m in self.models]

    @torch.no_grad()
    def probs(self, net_input, temperature: float) -> Tensor:
        """B x T x V tempered ensemble probabilities under teacher forcing."""
        return ensemble_probs(self.logits(net_input), temperature)
