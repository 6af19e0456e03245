"""Seq-Inter target selection (Kim & Rush 2016, section 3.2): among the teacher's K-best hypotheses for
a source sentence, train toward the one closest to the gold target.

Rule: the highest sacreBLEU sentence_bleu (exponential smoothing, sacreBLEU's default) of the
detokenized hypothesis against the detokenized gold target; ties go to the higher teacher score, then
to the better beam rank.
"""
from typing import List, Sequence, Tuple

from sacrebleu.metrics import BLEU

# what sacrebleu.sentence_bleu computes (exp smoothing, effective order), built once instead of per call
_SENTENCE_BLEU = BLEU(effective_order=True)


def select_closest(hypotheses: Sequence[Tuple[str, float]], gold: str) -> Tuple[int, float]:
    """hypotheses: (detokenized text, teacher score) in beam order. Returns (index, sentence BLEU)."""
    if not hypotheses:
        raise ValueError("no hypotheses to select from")
    scored: List[Tuple[float, float, int]] = []
    for rank, (text, score) in enumerate(hypotheses):
        bleu = _SENTENCE_BLEU.sentence_score(text, [gold]).score
        scored.append((bleu, score, -rank))
    best = max(scored)
    return -best[2], best[0]
