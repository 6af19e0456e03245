"""fairseq-kd-spm: train a sentencepiece model and apply it (encode to pieces, decode back to text).

    fairseq-kd-spm train --input train.en train.de --model-prefix spm --vocab-size 8000
    fairseq-kd-spm encode --model spm.model < raw.txt > pieces.txt
    fairseq-kd-spm encode --model spm.model --inputs a.en b.en --outputs a.sp.en b.sp.en
    fairseq-kd-spm decode --model spm.model < pieces.txt > raw.txt
"""
import argparse
import os
import sys

import sentencepiece as spm

from ..errors import FairseqKDError
from ..outputs import atomic_path, output_file


def train(args):
    spm.SentencePieceTrainer.train(
        input=",".join(args.input), model_prefix=args.model_prefix, vocab_size=args.vocab_size,
        model_type=args.model_type, character_coverage=args.character_coverage,
        input_sentence_size=args.input_sentence_size, shuffle_input_sentence=True,
        # fairseq adds its own <s>/<pad>/</s>/<unk>: keep sentencepiece's ids out of the way
        bos_id=-1, eos_id=-1, pad_id=-1, unk_id=0, minloglevel=2, num_threads=args.threads)


def load(model_path):
    try:
        return spm.SentencePieceProcessor(model_file=model_path)
    except (OSError, RuntimeError) as e:
        raise FairseqKDError(f"cannot load sentencepiece model {model_path}: {e}") from e


def encode_line(sp, line):
    return " ".join(sp.encode(line.rstrip("\n"), out_type=str)) + "\n"


def decode_line(sp, line):
    return sp.decode(line.split()) + "\n"


def apply(args, convert):
    sp = load(args.model)
    if not args.inputs:
        sys.stdout.writelines(convert(sp, line) for line in sys.stdin)
        return
    if len(args.inputs) != len(args.outputs or []):
        raise FairseqKDError("--inputs and --outputs must name the same number of files")
    for dst in args.outputs:
        output_file(dst, "--outputs")
    for src, dst in zip(args.inputs, args.outputs):
        with open(src, encoding="utf-8") as fin, atomic_path(dst) as tmp, open(tmp, "w", encoding="utf-8") as fout:
            fout.writelines(convert(sp, line) for line in fin)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fairseq-kd-spm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train")
    p.add_argument("--input", nargs="+", required=True)
    p.add_argument("--model-prefix", required=True)
    p.add_argument("--vocab-size", type=int, default=8000)
    p.add_argument("--model-type", default="unigram", choices=["unigram", "bpe"])
    p.add_argument("--character-coverage", type=float, default=1.0)
    p.add_argument("--input-sentence-size", type=int, default=2_000_000)
    p.add_argument("--threads", type=int, default=2)
    p.set_defaults(func=train)
    for name, convert in (("encode", encode_line), ("decode", decode_line)):
        p = sub.add_parser(name)
        p.add_argument("--model", required=True)
        p.add_argument("--inputs", nargs="*", help="files to convert (default: stdin to stdout)")
        p.add_argument("--outputs", nargs="*")
        p.set_defaults(func=lambda a, convert=convert: apply(a, convert))
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
