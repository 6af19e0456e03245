"""fairseq-kd-score: sacreBLEU of fairseq-generate outputs against raw references, and whether two differ.

    fairseq-generate ... --post-process sentencepiece > gen.out
    fairseq-kd-score gen.out --ref test2016.de [--detok moses] [--json bleu.json]
    fairseq-kd-score base.out pruned.out --ref test2016.de --paired-bs [--json compare.json]

Hypotheses are the detokenized `D-<id>` lines, put back in corpus order by id (`--text`: the inputs are
plain hypotheses, one a line, as `fairseq-kd-speed --hyp-dir` writes them). `--detok moses` additionally
runs sacremoses' detokenizer (for Moses-tokenized corpora). Prints each score with its sacreBLEU signature.

With several inputs and `--paired-bs`, each one after the first is compared with the first by paired
bootstrap resampling (fairseq_kd/significance.py, the test of `sacrebleu --paired-bs`): the BLEU difference,
its 95 % confidence interval and the p-value, over `--samples` resamples of the test sentences.
"""
import argparse
import json
import os

from .. import significance
from ..bleu import check_aligned, corpus_bleu, detokenize, read_lines
from ..errors import FairseqKDError
from ..outputs import atomic_write_text, output_file


def read_hypotheses(gen_path):
    hyps = {}
    for line in read_lines(gen_path):
        if line.startswith("D-"):
            tag, _score, *text = line.split("\t")
            hyps[int(tag[2:])] = text[0] if text else ""
    return [hyps[i] for i in sorted(hyps)], hyps


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fairseq-kd-score", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("outputs", nargs="+", metavar="OUTPUT",
                        help="fairseq-generate output(s); with --paired-bs the first is the baseline")
    parser.add_argument("--ref", required=True, help="raw reference file, one sentence a line")
    parser.add_argument("--text", action="store_true", help="the inputs are plain hypotheses, one a line")
    parser.add_argument("--detok", choices=["moses"], default=None)
    parser.add_argument("--lang", default="de", help="target language for --detok moses")
    parser.add_argument("--paired-bs", action="store_true",
                        help="compare every input after the first with the first (paired bootstrap resampling)")
    parser.add_argument("--samples", type=int, default=significance.DEFAULT_SAMPLES, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=significance.DEFAULT_SEED)
    parser.add_argument("--json", help="also write the result(s) here")
    parser.add_argument("--name", action="append", default=[], help="label of each input (default: file name)")
    args = parser.parse_args(argv)
    if len(args.name) > len(args.outputs):
        raise FairseqKDError(f"{len(args.name)} --name labels for {len(args.outputs)} inputs")
    if args.paired_bs and len(args.outputs) < 2:
        raise FairseqKDError("--paired-bs compares inputs with the first one: give at least two")
    if args.json:
        output_file(args.json, "--json")
    names = args.name + [os.path.basename(p) for p in args.outputs[len(args.name):]]
    refs = read_lines(args.ref)
    systems = []  # (name, hypotheses), detokenized once for both the scores and the paired test
    for name, path in zip(names, args.outputs):
        hyps = read_lines(path) if args.text else read_hypotheses(path)[0]
        check_aligned(hyps, refs, path)
        systems.append((name, detokenize(hyps, args.detok, args.lang)))
    refs = detokenize(refs, args.detok, args.lang)

    results = []
    for name, hyps in systems:
        result = dict(corpus_bleu(hyps, refs), detok=args.detok or "none", name=name)
        print(f"{name}: BLEU = {result['bleu']:.2f}  ({result['signature']})")
        results.append(result)
    if args.paired_bs:
        base_name, base = systems[0]
        print(f"paired bootstrap against {base_name} ({args.samples} resamples, seed {args.seed}):")
        for (name, hyps), result in zip(systems[1:], results[1:]):
            test = significance.paired_bootstrap(base, hyps, refs, args.samples, args.seed)
            result["paired_bs"] = dict(test, baseline_name=base_name)
            print(f"  {name}: {significance.describe(test)}")
    if args.json:
        atomic_write_text(args.json, json.dumps(results[0] if len(results) == 1 else results, indent=2))


if __name__ == "__main__":
    main()
