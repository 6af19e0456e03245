"""`seq_inter`: sequence-level interpolation (Kim & Rush 2016, section 3.2).

    L = (1 - a) * NLL_eps(gold target) + a * NLL_eps(selected hypothesis)

summed over each sentence's tokens (a sequence-level interpolation of the two log-likelihoods) and
normalised like fairseq's label_smoothed_cross_entropy by the gold target tokens (or sentences with
--sentence-avg). The selected hypothesis is the teacher's K-best entry closest to the gold by sentence
BLEU; the task `translation_seq_inter` supplies it. Batches without it (validation) get the gold term
alone. The logged kd_loss is the selected hypotheses' NLL per selected-hypothesis token (in bits, as
fairseq's nll_loss). Fine-tuning a Seq-KD student with this criterion is the paper's "Seq-KD + Seq-Inter".
"""
from dataclasses import dataclass, field

import torch
from omegaconf import II

from fairseq.criterions import register_criterion
from fairseq.dataclass import FairseqDataclass

from ..errors import FairseqKDError
from ..losses import interpolate
from .distillation import DistillationCriterion


@dataclass
class SeqInterConfig(FairseqDataclass):
    kd_alpha: float = field(default=0.5, metadata={"help": "weight a of the selected-hypothesis term, in [0, 1]"})
    label_smoothing: float = field(default=0.0, metadata={"help": "epsilon of both NLL terms"})
    sentence_avg: bool = II("optimization.sentence_avg")


@register_criterion("seq_inter", dataclass=SeqInterConfig)
class SeqInterCriterion(DistillationCriterion):
    def __init__(self, cfg: SeqInterConfig, task):
        super().__init__(cfg, task)
        if cfg.kd_alpha > 0 and not getattr(task.cfg, "selected_targets", ""):
            raise FairseqKDError("seq_inter needs the selected targets: --task translation_seq_inter "
                                 "--selected-targets PREFIX (from fairseq-kd-distill --select-closest)")

    def forward(self, model, sample, reduce=True):
        net_output = model(**sample["net_input"])
        lprobs = model.get_normalized_probs(net_output, log_probs=True)
        smoothed, nll = self.gold_terms(lprobs, model.get_targets(sample, net_output))
        gold_sum = smoothed.sum()
        if "selected_target" in sample and self.alpha > 0:
            selected_output = model(**sample["selected_net_input"])
            selected_lprobs = model.get_normalized_probs(selected_output, log_probs=True)
            selected_smoothed, selected_nll = self.gold_terms(selected_lprobs, sample["selected_target"])
            selected_sum, selected_nll_sum = selected_smoothed.sum(), selected_nll.sum()
            loss = interpolate(gold_sum, selected_sum, self.alpha)
            selected_ntokens = sample["selected_ntokens"]
        else:
            selected_nll_sum, selected_ntokens = torch.zeros_like(gold_sum), 0
            loss = gold_sum
        sample_size = self.sample_size(sample)
        # kd_loss: the selected hypotheses' plain NLL over their own tokens (none in validation batches)
        return loss, sample_size, self.logging_output(loss, nll.sum(), selected_nll_sum, sample, sample_size,
                                                      kd_ntokens=selected_ntokens)
