"""Is a BLEU difference real? Paired bootstrap resampling (Koehn 2004) over sacreBLEU's sentence statistics.

On a 1,000-sentence test set two near-identical models differ by a few tenths of BLEU by chance, the size of
the pruning targets (within 0.3 BLEU of unpruned). `paired_bootstrap` resamples the test sentences with
replacement, scores both systems on each resample with sacreBLEU, and reports the difference with a 95 %
confidence interval and the p-value of sacreBLEU's own paired bootstrap test (`sacrebleu --paired-bs`): the
same resamples for the same seed, so the p-value equals sacreBLEU's. BLEU itself is always sacreBLEU's.
"""
import numpy as np
import sacrebleu

from .errors import FairseqKDError

DEFAULT_SAMPLES = 1000
DEFAULT_SEED = 12345  # sacreBLEU's default seed (SACREBLEU_SEED)


def _r2(x):
    """Rounded to 2 decimals, and never -0.00."""
    return round(float(x), 2) + 0.0


def paired_bootstrap(baseline, system, references, n_samples=DEFAULT_SAMPLES, seed=DEFAULT_SEED):
    """BLEU of `system` minus BLEU of `baseline` (both lists of detokenized hypotheses, one reference each).

    Returns {"baseline", "system", "delta", "ci95": [low, high], "p_value", "n_samples", "seed",
    "signature"}: ci95 are the 2.5th and 97.5th percentiles of the resampled differences; p_value is the
    probability, under "no difference", of a difference at least as large as the one observed
    (sacreBLEU's paired bootstrap test; 1.0 for identical hypotheses, where sacreBLEU's gives 1 / (n + 1)).
    """
    if not len(baseline) == len(system) == len(references):
        raise FairseqKDError(f"paired bootstrap needs the same sentences: baseline has {len(baseline)}, "
                             f"system {len(system)}, references {len(references)}")
    if not references:
        raise FairseqKDError("paired bootstrap needs at least one sentence")
    if n_samples < 1:
        raise FairseqKDError(f"the number of bootstrap samples must be positive, got {n_samples}")
    bleu = sacrebleu.metrics.BLEU()
    refs = [list(references)]
    # the sentence statistics (n-gram matches and totals, lengths) sacreBLEU sums into a corpus score
    stats = [np.array(bleu._extract_corpus_statistics(list(h), refs), dtype="float32") for h in (baseline, system)]
    base_score, sys_score = (bleu._compute_score_from_stats(s.sum(0)).score for s in stats)
    # sacreBLEU draws the same index matrix for the same seed (significance._paired_bs_test)
    idxs = np.random.default_rng(seed).choice(len(references), size=(n_samples, len(references)), replace=True)
    base_samples, sys_samples = (np.array([bleu._compute_score_from_stats(s[i].sum(0)).score for i in idxs])
                                 for s in stats)
    diffs = sys_samples - base_samples
    low, high = np.percentile(diffs, [2.5, 97.5])
    # sacreBLEU's test statistic: |difference|, centred on its bootstrap mean
    abs_diffs = np.abs(diffs)
    p_value = (np.sum(abs_diffs - abs_diffs.mean() > abs(sys_score - base_score)).item() + 1) / (n_samples + 1)
    if list(baseline) == list(system):  # sacreBLEU's test gives 1 / (n + 1) here; identical output cannot differ
        p_value = 1.0
    return {"baseline": _r2(base_score), "system": _r2(sys_score), "delta": _r2(sys_score - base_score),
            "ci95": [_r2(low), _r2(high)], "p_value": round(p_value, 4),
            "n_samples": n_samples, "seed": seed, "signature": str(bleu.get_signature())}


def describe(result):
    """One line: Δ +0.12 (95 % CI -0.41..+0.66, p = 0.33)."""
    low, high = result["ci95"]
    return f"Δ {result['delta']:+.2f} (95% CI {low:+.2f}..{high:+.2f}, p = {result['p_value']:.3f})"
