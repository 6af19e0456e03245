"""fairseq-kd-score: sacreBLEU of a fairseq-generate output against raw references.

    fairseq-generate ... --post-process sentencepiece > gen.out
    fairseq-kd-score gen.out --ref test2016.de [--detok moses] [--json bleu.json]

Hypotheses are the detokenized `D-<id>` lines, put back in corpus order by id. `--detok moses`
additionally runs sacremoses' detokenizer (for Moses-tokenized corpora). Prints the score with its
sacreBLEU signature.
"""
import argparse
import json

import sacrebleu
from sacremoses import MosesDetokenizer

from ..errors import FairseqKDError


def read_hypotheses(gen_path):
    hyps = {}
    with open(gen_path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("D-"):
                tag, _score, *text = line.rstrip("\n").split("\t")
                hyps[int(tag[2:])] = text[0] if text else ""
    return [hyps[i] for i in sorted(hyps)], hyps


def corpus_bleu(hypotheses, references, detok=None, lang="de"):
    if len(hypotheses) != len(references):
        raise FairseqKDError(f"{len(hypotheses)} hypotheses but {len(references)} references: "
                             f"the generate output does not cover the reference file")
    if detok == "moses":
        md = MosesDetokenizer(lang=lang)
        hypotheses = [md.detokenize(h.split()) for h in hypotheses]
        references = [md.detokenize(r.split()) for r in references]
    bleu = sacrebleu.metrics.BLEU()
    result = bleu.corpus_score(hypotheses, [references])
    return {"bleu": round(result.score, 2), "signature": str(bleu.get_signature()),
            "n_sentences": len(hypotheses), "detok": detok or "none"}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fairseq-kd-score", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("generate_output")
    parser.add_argument("--ref", required=True, help="raw reference file, one sentence a line")
    parser.add_argument("--detok", choices=["moses"], default=None)
    parser.add_argument("--lang", default="de", help="target language for --detok moses")
    parser.add_argument("--json", help="also write the result here")
    parser.add_argument("--name", default=None, help="label printed with the score")
    args = parser.parse_args(argv)
    hyps, _ = read_hypotheses(args.generate_output)
    with open(args.ref, encoding="utf-8") as f:
        refs = [line.rstrip("\n") for line in f]
    result = corpus_bleu(hyps, refs, args.detok, args.lang)
    if args.name:
        result["name"] = args.name
    print(f"{args.name + ': ' if args.name else ''}BLEU = {result['bleu']:.2f}  ({result['signature']})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
