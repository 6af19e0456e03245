"""fairseq-kd-translate: raw text in, detokenized translations out, through the fastest engine for the model.

    fairseq-kd-translate --model PATH [--data DIR] --spm-model M [--engine auto|fairseq|fast|ctranslate2] \\
        [--beam 5] [--threads N] [--batch-tokens 4000] [--input FILE] [--output FILE]

--model is a checkpoint, a fairseq-kd-compress file or a fairseq-kd-export directory. --data is the data
directory holding the dictionaries (dict.SRC.txt, dict.TGT.txt), needed for checkpoints as in
fairseq-interactive; an export carries its vocabularies. Lines are read from --input (default: standard input),
encoded with the sentencepiece model --spm-model (--no-spm: the input is already in the model's subword units),
decoded in batches of about --batch-tokens source tokens (longest first), and written to --output (default:
standard output) in input order, decoded back to text; an empty line stays an empty line.

Engines (fairseq_kd.serving): `fast` (the lean kd_lstm decoder), `ctranslate2` (transformers; a checkpoint is
converted for the run, an export is used as it is), `fairseq` (SequenceGenerator, every model); `auto` picks the
first that supports the model in that order. --max-len-a/-b, --min-len, --lenpen and --unkpen are fairseq's.
"""
import argparse
import os
import sys
import time

import torch

from .. import inference
from ..errors import FairseqKDError
from ..outputs import atomic_path, output_file
from ..serving import ctranslate2_engine, engines
from ..serving.search import SearchOptions

USER_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parser():
    p = argparse.ArgumentParser(prog="fairseq-kd-translate", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--model", required=True, help="checkpoint, fairseq-kd-compress file or fairseq-kd-export directory")
    p.add_argument("--data", default=None, help="data directory with the dictionaries (for checkpoints)")
    p.add_argument("--spm-model", default=None, help="sentencepiece model the data was encoded with")
    p.add_argument("--no-spm", action="store_true", help="the input is already in the model's subword units")
    p.add_argument("--engine", default="auto", help=f"one of {', '.join(engines.ENGINES)} (default auto)")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--batch-tokens", type=int, default=4000, help="source tokens per batch")
    p.add_argument("--buffer-lines", type=int, default=20000, help="lines read, decoded and written at a time")
    p.add_argument("--input", default="-", help="raw source text (default: standard input)")
    p.add_argument("--output", default="-", help="translations (default: standard output)")
    p.add_argument("--max-len-a", type=float, default=0.0)
    p.add_argument("--max-len-b", type=int, default=200)
    p.add_argument("--min-len", type=int, default=1)
    p.add_argument("--lenpen", type=float, default=1.0)
    p.add_argument("--unkpen", type=float, default=0.0)
    return p


def check_options(opts):
    engines.check_engine(opts.engine)
    if opts.beam < 1:
        raise FairseqKDError(f"--beam must be >= 1, got {opts.beam}")
    if opts.batch_tokens < 1 or opts.buffer_lines < 1:
        raise FairseqKDError("--batch-tokens and --buffer-lines must be >= 1")
    if opts.threads is not None and opts.threads < 1:
        raise FairseqKDError(f"--threads must be >= 1, got {opts.threads}")
    if not os.path.exists(opts.model):
        raise FairseqKDError(f"--model not found: {opts.model}")
    if opts.spm_model is None and not opts.no_spm:
        raise FairseqKDError("give --spm-model (the sentencepiece model the data was encoded with), or --no-spm for "
                             "input already in subword units")
    if opts.spm_model is not None and not os.path.isfile(opts.spm_model):
        raise FairseqKDError(f"--spm-model not found: {opts.spm_model}")
    if opts.input != "-" and not os.path.exists(opts.input):
        raise FairseqKDError(f"--input not found: {opts.input}")
    if opts.input != "-" and os.path.isdir(opts.input):
        raise FairseqKDError(f"--input {opts.input} is a directory: give a text file (or - for standard input)")
    exported = ctranslate2_engine.is_exported(opts.model)
    if not exported:
        if opts.data is None:
            raise FairseqKDError(f"--model {opts.model} is a checkpoint: give --data, the directory with its "
                                 f"dictionaries (dict.SRC.txt, dict.TGT.txt)")
        if not os.path.isdir(opts.data):
            raise FairseqKDError(f"--data {opts.data} is not a directory")
    if opts.output != "-":
        output_file(opts.output, "--output")


class Codec:
    """Raw text <-> the model's subword units (sentencepiece, or none with --no-spm)."""

    def __init__(self, spm_model):
        self.sp = None
        if spm_model:
            import sentencepiece as spm

            self.sp = spm.SentencePieceProcessor(model_file=spm_model)

    def encode(self, line: str):
        return self.sp.encode(line, out_type=str) if self.sp else line.split()

    def decode(self, pieces):
        return self.sp.decode_pieces(pieces) if self.sp else " ".join(pieces)


class CheckpointTranslator:
    """A checkpoint or compressed file, with the data's dictionaries, through the engine's fairseq generator."""

    def __init__(self, opts):
        argv = [opts.data, "--user-dir", USER_DIR, "--path", opts.model, "--beam", str(opts.beam), "--nbest", "1",
                "--max-len-a", str(opts.max_len_a), "--max-len-b", str(opts.max_len_b), "--min-len", str(opts.min_len),
                "--lenpen", str(opts.lenpen), "--unkpen", str(opts.unkpen)]
        self.cfg = inference.generation_cfg(argv)
        self.task = inference.setup(self.cfg)
        self.loaded = engines.load(opts.model, self.cfg, self.task, opts.engine)
        self.generator = engines.build_generator(self.loaded, self.task, self.cfg, opts.beam)
        self.batch_tokens = opts.batch_tokens
        self.engine = self.loaded.engine

    def translate(self, sentences):
        src_dict, tgt_dict = self.task.source_dictionary, self.task.target_dictionary
        tokens = [src_dict.encode_line(" ".join(p), add_if_not_exist=False).long() for p in sentences]
        dataset = self.task.build_dataset_for_inference(tokens, [t.numel() for t in tokens])
        out = [None] * len(sentences)
        for batch_ids in inference.length_sorted_batches(dataset, None, max_tokens=self.batch_tokens):
            sample = inference.collate(dataset, batch_ids, False)
            hypos = self.task.inference_step(self.generator, self.loaded.models, sample)
            for i, sid in enumerate(sample["id"].tolist()):
                out[sid] = inference.ids_string(tgt_dict, hypos[i][0]["tokens"]).split()
        return out


class ExportTranslator:
    """A fairseq-kd-export directory through ctranslate2.Translator, on subword units (no fairseq task)."""

    def __init__(self, opts):
        if opts.engine not in ("auto", "ctranslate2"):
            raise FairseqKDError(f"--engine {opts.engine} cannot decode {opts.model}: it is a CTranslate2 export, "
                                 f"which only CTranslate2 decodes")
        self.translator = ctranslate2_engine.translator(opts.model, torch.get_num_threads())
        self.opts = SearchOptions(beam=opts.beam, max_len_a=opts.max_len_a, max_len_b=opts.max_len_b,
                                  min_len=opts.min_len, lenpen=opts.lenpen, unk_penalty=opts.unkpen)
        self.batch_tokens = opts.batch_tokens
        self.engine = "ctranslate2"

    def translate(self, sentences):
        from ..serving.search import max_length

        order = sorted(range(len(sentences)), key=lambda i: -len(sentences[i]))
        out = [None] * len(sentences)
        start = 0
        while start < len(order):  # batches of about batch_tokens source tokens (+1 for EOS), longest first
            longest = len(sentences[order[start]]) + 1
            size = max(1, self.batch_tokens // longest)
            ids = order[start: start + size]
            start += size
            results = self.translator.translate_batch(
                [sentences[i] for i in ids], beam_size=self.opts.beam,
                max_decoding_length=max_length(self.opts, longest, 1 << 30), min_decoding_length=self.opts.min_len,
                length_penalty=self.opts.lenpen)
            for i, r in zip(ids, results):
                out[i] = r.hypotheses[0]
        return out


def read_buffers(stream, size):
    buf = []
    for line in stream:
        buf.append(line.rstrip("\n"))
        if len(buf) == size:
            yield buf
            buf = []
    if buf:
        yield buf


def main(argv=None):
    opts = parser().parse_args(sys.argv[1:] if argv is None else argv)
    check_options(opts)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    codec = Codec(None if opts.no_spm else opts.spm_model)
    model = ExportTranslator(opts) if ctranslate2_engine.is_exported(opts.model) else CheckpointTranslator(opts)
    source = sys.stdin if opts.input == "-" else open(opts.input, encoding="utf-8")
    n, start = 0, time.perf_counter()

    def translations():
        nonlocal n
        for lines in read_buffers(source, opts.buffer_lines):
            pieces = [codec.encode(line) for line in lines]
            keep = [i for i, p in enumerate(pieces) if p]  # empty lines are not decoded
            hyps = model.translate([pieces[i] for i in keep]) if keep else []
            texts = [""] * len(lines)
            for i, h in zip(keep, hyps):
                texts[i] = codec.decode(h)
            n += len(lines)
            yield from texts

    try:
        if opts.output == "-":
            for text in translations():
                sys.stdout.write(text + "\n")
            sys.stdout.flush()
        else:
            with atomic_path(opts.output) as tmp, open(tmp, "w", encoding="utf-8") as f:
                for text in translations():
                    f.write(text + "\n")
    finally:
        if source is not sys.stdin:
            source.close()
    print(f"fairseq-kd-translate: {n} lines with engine {model.engine} in {time.perf_counter() - start:.1f} s",
          file=sys.stderr)


if __name__ == "__main__":
    main()
