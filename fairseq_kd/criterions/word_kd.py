"""`word_kd`: word-level knowledge distillation (Kim & Rush 2016, eq. 4; Hinton et al. 2015).

Per non-padding target token t:

    L_t = (1 - a) * NLL_eps(y_t) + a * T^2 * KL( p_T^(T)(. | y_<t, x) || p_S^(T)(. | y_<t, x) )

p^(T) = softmax(logits / T); NLL_eps is fairseq's label-smoothed NLL (eps = --label-smoothing);
p_T is the teacher (the mean of the members' tempered probabilities for an ensemble) under teacher
forcing on the gold prefix. The loss is summed over tokens and normalised like fairseq's
label_smoothed_cross_entropy (by tokens, or sentences with --sentence-avg).
"""
from dataclasses import dataclass, field

import torch
from omegaconf import II

from fairseq.criterions import register_criterion
from fairseq.dataclass import FairseqDataclass

from ..losses import fused_sparse_word_kd, interpolate, soft_target_loss
from ..teacher import Teacher
from ..teacher_topk_cache import TeacherTopKCache, tempered_topk_probs
from .distillation import DistillationCriterion


@dataclass
class WordKDConfig(FairseqDataclass):
    teacher_path: str = field(default="", metadata={
        "help": "teacher checkpoint(s), several joined by ':' form an ensemble (averaged probabilities)"})
    kd_alpha: float = field(default=0.5, metadata={"help": "weight a of the distillation term, in [0, 1]"})
    kd_temperature: float = field(default=1.0, metadata={"help": "softmax temperature T > 0 of teacher and student"})
    label_smoothing: float = field(default=0.0, metadata={"help": "epsilon of the gold NLL term"})
    teacher_topk_path: str = field(default="", metadata={
        "help": "offline teacher: a cache written by fairseq-kd-dump-topk for the training subset "
                "(used instead of --teacher-path while training)"})
    allow_stale_cache: bool = field(default=False, metadata={
        "help": "use a --teacher-topk-path cache whose teacher checkpoint has changed since it was made "
                "(a warning instead of an error)"})
    sentence_avg: bool = II("optimization.sentence_avg")
    train_subset: str = II("dataset.train_subset")


@register_criterion("word_kd", dataclass=WordKDConfig)
class WordKDCriterion(DistillationCriterion):
    """Online teacher (--teacher-path) or offline top-k cache (--teacher-topk-path).

    With only a cache, validation batches (not in the cache) get the gold term alone: compare
    checkpoints on nll_loss then (--best-checkpoint-metric nll_loss).
    """

    def __init__(self, cfg: WordKDConfig, task, teacher: Teacher = None):
        super().__init__(cfg, task)
        self.topk_cache = None
        if cfg.teacher_topk_path and cfg.kd_alpha > 0:
            subset = cfg.train_subset
            self.topk_cache = TeacherTopKCache(cfg.teacher_topk_path)
            task.load_dataset(subset)
            self.topk_cache.check_matches(task.target_dictionary, subset, task.dataset(subset).tgt_sizes,
                                          cfg.allow_stale_cache)
        # With a = 0 the loss is plain (label-smoothed) NLL and no teacher is needed.
        # `teacher` lets Python callers pass already-loaded models (fairseq never sets it).
        if teacher is None and (cfg.teacher_path or (cfg.kd_alpha > 0 and self.topk_cache is None)):
            teacher = Teacher.load(cfg.teacher_path, task)
        self.teacher = teacher

    def soft_term(self, model, sample, net_output, target, lprobs):
        """Per-token soft loss T^2 KL (0 at padding) and extra logging entries; None without a teacher."""
        if self.topk_cache is not None and model.training:
            values, ids = self.topk_cache.lookup(sample["id"], target, self.padding_idx)
            kd = soft_target_loss(tempered_topk_probs(values, self.temperature),
                                  self.student_tempered(net_output, lprobs), self.temperature, ids)
        elif self.teacher is not None:
            self.teacher.follow(model)
            teacher_probs = self.teacher.probs(sample["net_input"], self.temperature)
            kd = soft_target_loss(teacher_probs, self.student_tempered(net_output, lprobs), self.temperature)
        else:
            return None, {}
        return kd.masked_fill(target.eq(self.padding_idx), 0.0), {}

    def fused_offline(self, model, sample):
        """The top-k cache at T = 1: gold and soft terms in one sparse pass (losses.fused_sparse_word_kd)."""
        net_output = model(**sample["net_input"])
        target = model.get_targets(sample, net_output)
        lprobs = model.get_normalized_probs(net_output, log_probs=True)
        values, ids = self.topk_cache.lookup(sample["id"], target, self.padding_idx)
        per_token, nll, kd = fused_sparse_word_kd(lprobs, target, ids, tempered_topk_probs(values, 1.0),
                                                  self.alpha, self.eps, self.padding_idx)
        loss = per_token.sum()
        sample_size = self.sample_size(sample)
        return loss, sample_size, self.logging_output(loss, nll.sum(), kd.sum(), sample, sample_size)

    def forward(self, model, sample, reduce=True):
        if self.topk_cache is not None and model.training and self.temperature == 1.0:
            return self.fused_offline(model, sample)
        net_output = model(**sample["net_input"])
        target = model.get_targets(sample, net_output)
        lprobs = model.get_normalized_probs(net_output, log_probs=True)
        smoothed, nll = self.gold_terms(lprobs, target)
        kd, extra = self.soft_term(model, sample, net_output, target, lprobs)
        if kd is None:
            kd, alpha = torch.zeros_like(nll), 0.0
        else:
            alpha = self.alpha
        loss = interpolate(smoothed, kd, alpha).sum()
        sample_size = self.sample_size(sample)
        log = self.logging_output(loss, nll.sum(), kd.sum(), sample, sample_size)
        log.update(extra)
        return loss, sample_size, log
