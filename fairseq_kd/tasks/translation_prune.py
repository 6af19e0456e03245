"""`translation_prune`: fairseq's translation task that prunes the model by weight magnitude and retrains
it with the pruned weights held at exactly zero.

    fairseq-train DATA --user-dir fairseq_kd --task translation_prune --finetune-from-model STUDENT.pt \\
        --prune-ratio 0.8 --prune-scheme class-blind [--prune-schedule gradual --prune-steps 1000] ...

Masks are computed from the model's weights at --prune-start-update (one-shot), or recomputed on the
cubic schedule (gradual); see fairseq_kd.pruning for the schemes. After every optimizer step the
masked weights are zeroed in the model and in the optimizer's fp32 master copy (--fp16), so they stay
zero with --update-freq and after --reset-optimizer. Across save/resume the saved weights carry the
masks (pruned entries are exactly 0.0) and the resumed run takes them from there; the masks are also
stored in the checkpoint's task state. Model weights themselves are plain tensors, so the result
loads in plain `fairseq-generate --user-dir fairseq_kd`.

checkpoint_best.pt is always a model at the final sparsity: a validation while the gradual schedule is
still pruning (or the first one after it ends) makes fairseq forget its best validation loss so far, so a
less-pruned model with a lower loss never stays checkpoint_best.pt. fairseq's reduce_lr_on_plateau still
sees those validations: when the schedule spans several epochs, pass --validate-after-updates (the end of
the schedule) to keep the rising loss of the pruning phase from shrinking the learning rate.

The task extends `translation_seq_inter`: with --selected-targets a Seq-Inter student is retrained with
its own objective (--criterion seq_inter); without, it is fairseq's translation task.
"""
import logging
from dataclasses import dataclass, field
from typing import Dict

import torch
from fairseq import checkpoint_utils
from fairseq.dataclass import ChoiceEnum
from fairseq.tasks import register_task

from .. import pruning
from .translation_seq_inter import SeqInterConfig, TranslationSeqInterTask

logger = logging.getLogger(__name__)


PRUNE_SCHEMES = ChoiceEnum(list(pruning.SCHEMES))
PRUNE_SCHEDULES = ChoiceEnum(["one-shot", "gradual"])


@dataclass
class PruneConfig(SeqInterConfig):
    prune_ratio: float = field(default=0.0, metadata={"help": "fraction of prunable weights set to zero, in [0, 1)"})
    prune_scheme: PRUNE_SCHEMES = field(default="class-blind", metadata={"help": "magnitude pruning scheme"})
    prune_biases: bool = field(default=False, metadata={"help": "also prune biases (default: weight matrices only)"})
    prune_exclude: str = field(default="", metadata={
        "help": "regular expression: weights whose name matches stay dense (e.g. 'embed_tokens')"})
    prune_schedule: PRUNE_SCHEDULES = field(default="one-shot", metadata={
        "help": "prune once, or on Zhu & Gupta's cubic schedule over --prune-steps updates"})
    prune_start_update: int = field(default=0, metadata={"help": "update at which pruning starts"})
    prune_steps: int = field(default=1000, metadata={"help": "length of the gradual schedule, in updates"})
    prune_frequency: int = field(default=100, metadata={"help": "gradual: recompute the masks every N updates"})


def unwrap(model):
    while hasattr(model, "module"):
        model = model.module
    return model


@register_task("translation_prune", dataclass=PruneConfig)
class TranslationPruneTask(TranslationSeqInterTask):
    def __init__(self, cfg, src_dict, tgt_dict):
        super().__init__(cfg, src_dict, tgt_dict)
        pruning.check_ratio(cfg.prune_ratio)
        pruning.check_scheme(str(cfg.prune_scheme))
        pruning.check_exclude(cfg.prune_exclude)
        self.masks: Dict[str, torch.Tensor] = {}
        self.mask_sparsity = 0.0
        self.best_counts = False  # whether the previous validation saw the final sparsity

    def prunable(self, model):
        return pruning.prunable(unwrap(model).named_parameters(), self.cfg.prune_biases, self.cfg.prune_exclude)

    # ---- when masks are (re)computed ---------------------------------------------------------------
    def target_sparsity(self, update_num: int) -> float:
        c = self.cfg
        if str(c.prune_schedule) == "one-shot":
            return c.prune_ratio if update_num >= c.prune_start_update else 0.0
        return pruning.cubic_sparsity(update_num, c.prune_start_update, c.prune_steps, c.prune_ratio)

    def needs_new_masks(self, update_num: int) -> bool:
        target = self.target_sparsity(update_num)
        if target <= 0.0 or abs(target - self.mask_sparsity) < 1e-9:
            return False
        if not self.masks or str(self.cfg.prune_schedule) == "one-shot":
            return True
        since = update_num - self.cfg.prune_start_update
        return since % max(self.cfg.prune_frequency, 1) == 0 or target == self.cfg.prune_ratio

    def update_masks(self, model, update_num: int):
        sparsity = self.target_sparsity(update_num)
        weights = self.prunable(model)
        self.masks = pruning.compute_masks(weights, sparsity, str(self.cfg.prune_scheme))
        self.mask_sparsity = sparsity
        logger.info("pruned to %.2f%% at update %d (%s):\n%s", 100 * pruning.overall_sparsity(self.masks), update_num,
                    self.cfg.prune_scheme, pruning.sparsity_table(self.masks))

    def apply(self, model, optimizer=None):
        if not self.masks:
            return
        params = dict(unwrap(model).named_parameters())
        pruning.apply_masks(params, self.masks)
        if optimizer is not None:
            for name, master in fp32_master_copies(optimizer, unwrap(model)).items():
                if name in self.masks:
                    master.data.masked_fill_(~self.masks[name].to(master.device).view_as(master), 0)

    def at_final_sparsity(self) -> bool:
        return self.mask_sparsity >= self.cfg.prune_ratio - 1e-9

    # ---- fairseq hooks -----------------------------------------------------------------------------
    def begin_valid_epoch(self, epoch, model):
        super().begin_valid_epoch(epoch, model)
        if not self.best_counts:  # the best loss so far was measured on a less-pruned model
            if hasattr(checkpoint_utils.save_checkpoint, "best"):
                del checkpoint_utils.save_checkpoint.best
                logger.info("validation at %.2f%% sparsity: the best loss of less-pruned models is forgotten",
                            100 * self.mask_sparsity)
        self.best_counts = self.at_final_sparsity()

    def restore_masks_from_zeros(self, model, update_num):
        """On resume: fairseq's trainer does not hand the task its saved state, but the restored weights
        carry the masks exactly (pruned entries are 0.0, and kept weights of a trained model are not)."""
        weights = self.prunable(model)
        self.masks = {n: w.detach().ne(0) for n, w in weights.items()}
        self.mask_sparsity = self.target_sparsity(update_num)
        self.best_counts = self.at_final_sparsity()  # checkpoints are saved where validation ran
        logger.info("resumed at update %d: masks restored from the restored weights, %.2f%% sparsity",
                    update_num, 100 * pruning.overall_sparsity(self.masks))

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        if not self.masks and update_num > self.cfg.prune_start_update and self.target_sparsity(update_num - 1) > 0:
            self.restore_masks_from_zeros(model, update_num)
        if self.needs_new_masks(update_num):
            self.update_masks(model, update_num)
            self.apply(model, optimizer)
        return super().train_step(sample, model, criterion, optimizer, update_num, ignore_grad)

    def optimizer_step(self, optimizer, model, update_num):
        super().optimizer_step(optimizer, model, update_num)
        self.apply(model, optimizer)

    def state_dict(self):
        return {"prune_masks": {n: m.cpu() for n, m in self.masks.items()}, "prune_mask_sparsity": self.mask_sparsity}

    def load_state_dict(self, state_dict):
        self.masks = dict(state_dict.get("prune_masks", {}))
        self.mask_sparsity = state_dict.get("prune_mask_sparsity", 0.0)
        if self.masks:
            logger.info("restored pruning masks: %.2f%% sparsity", 100 * pruning.overall_sparsity(self.masks))


def fp32_master_copies(optimizer, model) -> Dict[str, torch.Tensor]:
    """Name -> the fp32 master copy the optimizer updates (fairseq's FP16Optimizer), as views shaped like
    the parameter. Empty when the optimizer updates the model's own parameters."""
    fp32 = getattr(optimizer, "fp32_params", None)
    if fp32 is None:
        return {}
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if isinstance(fp32, dict) or torch.is_tensor(fp32):  # flattened: one vector per device, in parameter order
        flat = fp32 if torch.is_tensor(fp32) else next(iter(fp32.values()))
        views, offset = {}, 0
        for n, p in named:
            views[n] = flat.data[offset:offset + p.numel()].view_as(p)
            offset += p.numel()
        return views
    return {n: p32 for (n, _), p32 in zip(named, fp32)}
