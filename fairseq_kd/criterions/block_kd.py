"""`block_kd`: sequence-blocking distillation (block-weighted word-level KD).

Per non-padding target token t in block b(t):

    L_t = (1 - a) * NLL_eps(y_t) + a * w_b(t) * T^2 * KL( p_T^(T) || p_S^(T) )

The gold term is word_kd's (label smoothing = the smoothing term); the soft term is word_kd's KL,
weighted per block. Blocks, block scores and weights are defined in `fairseq_kd.blocks`:

  1. split the gold target into blocks (--block-mode fixed | word | punct, --block-size for fixed);
  2. score each block (--block-score teacher-gold | teacher-max | student-ce), teacher scores at T = 1;
  3. weight it: --block-weighting confidence | softmax | hard, then w_b = 0 when the score is under
     --block-threshold; or --block-weighting select: w_b = 1 for the top --select-rate blocks of the
     sentence / batch / recent-history queue (--select-level), 0 otherwise (Wang et al. 2021).

Ignored tokens keep their gold term and stay in the normaliser (tokens, as word_kd). With
--block-weighting hard --block-threshold 0 and a = 1 this is exactly word_kd with a = 1; with
--block-size 1 --block-score student-ce --block-weighting select it is Wang et al.'s word-level
(sentence/batch/global) selective distillation.
"""
from dataclasses import dataclass, field

import torch
from fairseq.criterions import register_criterion
from fairseq.dataclass import ChoiceEnum
from fairseq.logging import metrics

from .. import blocks
from ..errors import FairseqKDError
from ..losses import ensemble_probs, soft_target_loss
from .word_kd import WordKDConfig, WordKDCriterion

CHOICES = {
    "block_mode": ["fixed", "word", "punct"],
    "block_score": ["teacher-gold", "teacher-max", "student-ce"],
    "block_weighting": ["confidence", "softmax", "hard", "select"],
    "select_level": ["sentence", "batch", "global"],
}
BLOCK_MODES, BLOCK_SCORES, BLOCK_WEIGHTINGS, SELECT_LEVELS = (ChoiceEnum(CHOICES[k]) for k in CHOICES)


@dataclass
class BlockKDConfig(WordKDConfig):
    block_mode: BLOCK_MODES = field(default="word", metadata={"help": "how target tokens are grouped into blocks"})
    block_size: int = field(default=4, metadata={"help": "tokens per block for --block-mode fixed"})
    block_score: BLOCK_SCORES = field(default="teacher-gold", metadata={"help": "score of a block"})
    block_weighting: BLOCK_WEIGHTINGS = field(default="confidence", metadata={"help": "block weight from its score"})
    block_threshold: float = field(default=0.0, metadata={
        "help": "blocks whose teacher score is below this get weight 0 (in [0, 1]; teacher scores only)"})
    block_temperature: float = field(default=1.0, metadata={"help": "temperature of --block-weighting softmax"})
    select_rate: float = field(default=0.5, metadata={"help": "fraction of blocks kept by --block-weighting select"})
    select_level: SELECT_LEVELS = field(default="batch", metadata={"help": "where --block-weighting select ranks blocks"})
    select_queue_size: int = field(default=30000, metadata={"help": "history length for --select-level global"})


def check_block_config(cfg):
    for key, allowed in CHOICES.items():
        if str(getattr(cfg, key)) not in allowed:
            raise FairseqKDError(f"--{key.replace('_', '-')} must be one of {', '.join(allowed)}, "
                                 f"got {str(getattr(cfg, key))!r}")
    if cfg.block_size < 1:
        raise FairseqKDError(f"--block-size must be >= 1, got {cfg.block_size}")
    if not 0.0 <= cfg.block_threshold <= 1.0:
        raise FairseqKDError(f"--block-threshold must be in [0, 1], got {cfg.block_threshold}")
    if not cfg.block_temperature > 0.0:
        raise FairseqKDError(f"--block-temperature must be > 0, got {cfg.block_temperature}")
    if not 0.0 <= cfg.select_rate <= 1.0:
        raise FairseqKDError(f"--select-rate must be in [0, 1], got {cfg.select_rate}")
    if cfg.select_queue_size < 1:
        raise FairseqKDError(f"--select-queue-size must be >= 1, got {cfg.select_queue_size}")
    if str(cfg.block_score) == "student-ce" and str(cfg.block_weighting) != "select":
        raise FairseqKDError("--block-score student-ce is a difficulty, not a confidence: use it with "
                             "--block-weighting select")
    if cfg.teacher_topk_path:
        raise FairseqKDError("block_kd scores blocks with the teacher's full distribution: use --teacher-path, "
                             "not --teacher-topk-path")
    if cfg.kd_alpha == 0.0:
        raise FairseqKDError("block_kd with --kd-alpha 0 is plain NLL: use label_smoothed_cross_entropy")


@register_criterion("block_kd", dataclass=BlockKDConfig)
class BlockKDCriterion(WordKDCriterion):
    def __init__(self, cfg: BlockKDConfig, task, teacher=None):
        check_block_config(cfg)
        super().__init__(cfg, task, teacher=teacher)
        self.block_mode, self.block_score = str(cfg.block_mode), str(cfg.block_score)
        self.block_weighting, self.select_level = str(cfg.block_weighting), str(cfg.select_level)
        d = task.target_dictionary
        self.eos_idx = d.eos()
        specials = {d.bos(), d.pad(), d.eos(), d.unk()}
        self.word_start, self.is_punct, self.continues = blocks.symbol_flags(d.symbols, specials)
        self.queue = blocks.ScoreQueue(cfg.select_queue_size) if self.select_level == "global" else None

    def token_block_weights(self, target, teacher_probs_t1, student_lprobs):
        """B x T weights (0 at padding), and the number of blocks, for logging."""
        c = self.cfg
        mask = target.ne(self.padding_idx)
        starts = blocks.block_starts(target, self.block_mode, c.block_size, self.eos_idx,
                                     self.word_start, self.is_punct, self.continues)
        ids = blocks.block_ids(starts)
        if self.block_score == "student-ce":
            per_token = -student_lprobs.detach().gather(-1, target.unsqueeze(-1)).squeeze(-1)
        elif self.block_score == "teacher-gold":
            per_token = teacher_probs_t1.gather(-1, target.unsqueeze(-1)).squeeze(-1).clamp_min(1e-30).log()
        else:  # teacher-max
            per_token = teacher_probs_t1.max(dim=-1).values.clamp_min(1e-30).log()
        mean, counts = blocks.block_reduce(per_token, ids, mask)
        exists = counts.gt(0)
        scores = mean if self.block_score == "student-ce" else mean.exp()
        if self.block_weighting == "select":
            w = blocks.select_blocks(scores, exists, c.select_rate, self.select_level, self.queue)
        else:
            w = blocks.block_weights(scores, exists, self.block_weighting, c.block_threshold, c.block_temperature)
        return blocks.token_weights(w, ids, mask), w.masked_select(exists)

    def soft_term(self, model, sample, net_output, target, lprobs):
        self.teacher.follow(model)
        logits = self.teacher.logits(sample["net_input"])
        teacher_probs = ensemble_probs(logits, self.temperature)
        teacher_probs_t1 = teacher_probs if self.temperature == 1.0 else ensemble_probs(logits, 1.0)
        weights, block_w = self.token_block_weights(target, teacher_probs_t1, lprobs)
        kd = soft_target_loss(teacher_probs, self.student_tempered(net_output, lprobs), self.temperature)
        # torch.where, not a product, so an ignored token's soft term has exactly zero gradient
        kd = torch.where(weights > 0, weights * kd, torch.zeros_like(kd))
        ignored = (weights.eq(0) & target.ne(self.padding_idx)).sum().item()
        return kd, {"ignored_tokens": ignored, "n_blocks": block_w.numel(), "block_weight_sum": block_w.sum().item()}

    @classmethod
    def reduce_metrics(cls, logging_outputs) -> None:
        super().reduce_metrics(logging_outputs)
        total = lambda key: sum(log.get(key, 0) for log in logging_outputs)  # noqa: E731
        ntokens, n_blocks = total("ntokens"), max(total("n_blocks"), 1)
        metrics.log_scalar("ignored_frac", total("ignored_tokens") / max(ntokens, 1), ntokens, round=3)
        metrics.log_scalar("block_weight", total("block_weight_sum") / n_blocks, n_blocks, round=3)
        metrics.log_scalar("block_len", ntokens / n_blocks, n_blocks, round=2)
