"""What the distillation criterions share: the checks of their flags, the gold term, the student's tempered
log-probabilities, and fairseq's logging and metrics.

Every criterion here logs per batch
    loss         the objective (summed; normalised by sample_size, tokens or sentences with --sentence-avg)
    nll_loss     the student's plain NLL of the gold target (per gold token in the metrics)
    kd_loss      the distillation term, summed over the `kd_ntokens` tokens it runs over (per one of those
                 tokens in the metrics): the gold tokens for word_kd and block_kd, the selected hypotheses'
                 tokens for seq_inter
"""
import math

from fairseq import utils
from fairseq.criterions import FairseqCriterion
from fairseq.logging import metrics

from ..errors import FairseqKDError
from ..losses import gold_nll, tempered_log_probs


def check_alpha(alpha: float, name: str = "--kd-alpha"):
    if not 0.0 <= alpha <= 1.0:
        raise FairseqKDError(f"{name} must be in [0, 1], got {alpha}")


def check_temperature(temperature: float):
    if not temperature > 0.0:
        raise FairseqKDError(f"--kd-temperature must be > 0, got {temperature}")


def check_label_smoothing(epsilon: float):
    if not 0.0 <= epsilon < 1.0:
        raise FairseqKDError(f"--label-smoothing must be in [0, 1), got {epsilon}")


class DistillationCriterion(FairseqCriterion):
    """Shared glue: the gold term, the soft term against the teacher, and fairseq's metrics.

    `cfg` is the criterion's dataclass config (kd_alpha, label_smoothing, sentence_avg, and kd_temperature
    where the criterion has one). Subclasses decide what the soft term is fed (an online teacher or a cached
    top-k in word_kd, block weights in block_kd, selected hypotheses in seq_inter).
    """

    def __init__(self, cfg, task):
        super().__init__(task)
        self.cfg = cfg
        temperature = getattr(cfg, "kd_temperature", 1.0)
        check_alpha(cfg.kd_alpha)
        check_temperature(temperature)
        check_label_smoothing(cfg.label_smoothing)
        self.alpha = cfg.kd_alpha
        self.temperature = temperature
        self.eps = cfg.label_smoothing
        self.sentence_avg = cfg.sentence_avg

    def gold_terms(self, lprobs, target):
        return gold_nll(lprobs, target, self.eps, self.padding_idx)

    def student_tempered(self, net_output, lprobs):
        """The student's log-probs at T (its plain log-probs at T = 1: no second log-softmax)."""
        return lprobs if self.temperature == 1.0 else tempered_log_probs(net_output[0], self.temperature)

    def logging_output(self, loss, nll, kd, sample, sample_size, kd_ntokens=None):
        return {
            "loss": loss.data,
            "nll_loss": nll.data,
            "kd_loss": kd.data,
            "ntokens": sample["ntokens"],
            "kd_ntokens": sample["ntokens"] if kd_ntokens is None else kd_ntokens,
            "nsentences": sample["target"].size(0),
            "sample_size": sample_size,
        }

    def sample_size(self, sample):
        return sample["target"].size(0) if self.sentence_avg else sample["ntokens"]

    @classmethod
    def reduce_metrics(cls, logging_outputs) -> None:
        def total(key):
            return sum(log.get(key, 0) for log in logging_outputs)

        sample_size, ntokens, kd_ntokens = total("sample_size"), total("ntokens"), total("kd_ntokens")
        metrics.log_scalar("loss", total("loss") / sample_size / math.log(2), sample_size, round=3)
        metrics.log_scalar("nll_loss", total("nll_loss") / ntokens / math.log(2), ntokens, round=3)
        if kd_ntokens > 0:  # seq_inter's validation batches have no selected hypotheses
            metrics.log_scalar("kd_loss", total("kd_loss") / kd_ntokens / math.log(2), kd_ntokens, round=3)
        metrics.log_derived("ppl", lambda meters: utils.get_perplexity(meters["nll_loss"].avg))

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
