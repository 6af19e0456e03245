"""sacreBLEU on detokenized text: reading hypothesis and reference files, Moses detokenization, corpus BLEU
with its signature. The library behind fairseq-kd-score, fairseq-kd-speed and the recipes' report."""
import sacrebleu
from sacremoses import MosesDetokenizer

from .errors import FairseqKDError


def read_lines(path):
    """The file's lines; a missing, unreadable or non-UTF-8 file is one FairseqKDError naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            return [line.rstrip("\n") for line in f]
    except FileNotFoundError:
        raise FairseqKDError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise FairseqKDError(f"{path} is a directory, not a text file") from None
    except UnicodeDecodeError as e:
        raise FairseqKDError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise FairseqKDError(f"cannot read {path}: {e.strerror}") from None


def detokenize(lines, detok=None, lang="de"):
    if detok != "moses":
        return list(lines)
    md = MosesDetokenizer(lang=lang)
    return [md.detokenize(line.split()) for line in lines]


def check_aligned(hypotheses, references, what="the generate output"):
    if len(hypotheses) != len(references):
        raise FairseqKDError(f"{len(hypotheses)} hypotheses but {len(references)} references: "
                             f"{what} does not cover the reference file")


def corpus_bleu(hypotheses, references, detok=None, lang="de"):
    check_aligned(hypotheses, references)
    hypotheses, references = detokenize(hypotheses, detok, lang), detokenize(references, detok, lang)
    bleu = sacrebleu.metrics.BLEU()
    result = bleu.corpus_score(hypotheses, [references])
    return {"bleu": round(result.score, 2), "signature": str(bleu.get_signature()),
            "n_sentences": len(hypotheses), "detok": detok or "none"}
