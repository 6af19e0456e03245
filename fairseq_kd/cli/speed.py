"""fairseq-kd-speed: decode speed and BLEU of one or more checkpoints, as JSON.

    fairseq-kd-speed DATA --user-dir fairseq_kd --path A.pt --path B.pt --gen-subset test \\
        --beam 1 5 --batch-size 1 64 --threads 2 --ref test2016.de --post-process sentencepiece \\
        --output speed.json

Every (model, engine, beam, batch size) is decoded over the first --max-sentences sentences of the subset, in
length-sorted batches. --engine fairseq (the default) is fairseq's SequenceGenerator, the search of
fairseq-generate; `fast` and `ctranslate2` are the serving engines of fairseq_kd.serving, and `auto` the fastest
that supports each model (see `fairseq-kd-translate`). Several engines give each model one row per engine (an
engine that resolves to one already listed is measured once); --path also takes a fairseq-kd-export directory.
Every engine goes through the same batches, warm-up and passes; each row records its engine.
--warmup batches are decoded and not timed; then --repeats timed passes. Reported per row: median,
min and max over repeats of target words/s (detokenized words of the hypotheses), subword tokens/s and
sentences/s; at batch size 1 the per-sentence latency p50/p95 (ms); total and nonzero parameters;
checkpoint file size; the process's peak RSS after that row; sacreBLEU and its signature against
--ref (first pass's hypotheses, detokenized by --post-process); with --hyp-dir those hypotheses are also
written there, one file per row (NAME[.ENGINE].beamB.batchN.txt, its path in the row's "hypotheses"), for
`fairseq-kd-score --text --paired-bs` to test BLEU differences between rows. Any other fairseq-generate option
(--lenpen, --max-len-a/b, --fp16, --cpu, ...) applies to every row. `--source-file F --spm-model M`
decodes raw source text instead of a binarized subset.

With --interleave the timed passes go round-robin over all rows (pass 1 of every row, then pass 2, ...;
all models stay loaded), so slow drift of a shared machine's speed hits every model alike instead of
whichever row ran during it.
"""
import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import time

import torch

from .. import __version__, inference
from ..bleu import corpus_bleu, read_lines
from ..errors import FairseqKDError
from ..outputs import atomic_write_lines, atomic_write_text, output_dir, output_file
from ..serving import ctranslate2_engine, engines


def own_options():
    p = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    p.add_argument("--path", action="append", default=[], help="checkpoint to measure (repeat for several)")
    p.add_argument("--name", action="append", default=[], help="label of each --path (default: file name)")
    p.add_argument("--engine", nargs="+", default=["fairseq"],
                   help="decoding engines: fairseq (default), fast, ctranslate2, auto (one row per model and engine)")
    p.add_argument("--beam", type=int, nargs="+", default=[1, 5])
    p.add_argument("--batch-size", type=int, nargs="+", default=[1, 64])
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--max-sentences", type=int, default=None, help="measure on the first N sentences")
    p.add_argument("--warmup", type=int, default=2, help="untimed batches before each row")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--interleave", action="store_true",
                   help="time the repeats round-robin over all rows (keeps every model loaded)")
    p.add_argument("--ref", default=None, help="raw reference file for sacreBLEU")
    p.add_argument("--detok", choices=["moses"], default=None)
    p.add_argument("--hyp-dir", default=None, help="write each row's hypotheses here (one file per row)")
    p.add_argument("--source-file", default=None, help="raw source text to decode instead of --gen-subset")
    p.add_argument("--spm-model", default=None, help="sentencepiece model that encodes --source-file")
    p.add_argument("--output", required=True)
    return p


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def percentile(values, q):
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def spread(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def raw_source_dataset(task, source_file, spm_model):
    import sentencepiece as spm

    lines = read_lines(source_file)
    if not any(lines):
        raise FairseqKDError(f"source file {source_file} is empty")
    sp = spm.SentencePieceProcessor(model_file=spm_model) if spm_model else None
    src_dict = task.source_dictionary
    tokens = [src_dict.encode_line(" ".join(sp.encode(x, out_type=str)) if sp else x,
                                   add_if_not_exist=False).long() for x in lines]
    return task.build_dataset_for_inference(tokens, [t.numel() for t in tokens])


def timed_pass(task, cfg, generator, models, dataset, batches, use_cuda):
    """One pass over `batches`: per-batch seconds, and the hypotheses by sample id."""
    seconds, hyps = [], {}
    for batch_ids in batches:
        sample = inference.collate(dataset, batch_ids, use_cuda)
        if use_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = task.inference_step(generator, models, sample)
        if use_cuda:
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
        for i, sid in enumerate(sample["id"].tolist()):
            hyps[sid] = out[i][0]
    return seconds, hyps


class Row:
    """One (model, beam, batch size) row: its generator and batches, warmed up; passes are timed one by one.

    With `exclusive` (--interleave: every row exists at once), a CTranslate2 row holds its Translator only during its
    own pass: it is loaded and warmed up again before each pass, untimed, and released after, because two Translators
    that have decoded slow each other several times over (CT2Generator's docstring)."""

    def __init__(self, task, cfg, loaded, dataset, ids, beam, batch_size, opts, use_cuda, exclusive=False):
        self.task, self.cfg, self.models, self.dataset, self.ids = task, cfg, loaded.models, dataset, ids
        self.beam, self.batch_size, self.use_cuda = beam, batch_size, use_cuda
        self.generator = engines.build_generator(loaded, task, cfg, beam)
        self.batches = inference.length_sorted_batches(dataset, ids, batch_size=batch_size)
        self.passes = []
        self.warm = self.batches[: opts.warmup]
        self.exclusive = exclusive and hasattr(self.generator, "release")
        self.warm_up()
        if self.exclusive:
            self.release()

    def warm_up(self):
        if self.warm:
            timed_pass(self.task, self.cfg, self.generator, self.models, self.dataset, self.warm, self.use_cuda)

    def time_pass(self):
        if self.exclusive:  # loaded and warmed up again outside the timing (with --warmup 0 too)
            self.generator.load()
            self.warm_up()
        self.passes.append(timed_pass(self.task, self.cfg, self.generator, self.models, self.dataset, self.batches,
                                      self.use_cuda))
        if self.exclusive:
            self.release()

    def release(self):
        if hasattr(self.generator, "release"):
            self.generator.release()

    def result(self):
        """The row's JSON fields and its first pass's hypotheses (text, in id order)."""
        passes = self.passes
        texts = {sid: inference.hypothesis_text(self.task, self.cfg, h) for sid, h in passes[0][1].items()}
        n_tokens = sum(len(h["tokens"]) for h in passes[0][1].values())
        n_words = sum(len(texts[sid][1].split()) for sid in texts)
        times = [sum(s) for s, _ in passes]
        n = len(self.ids)
        row = {
            "beam": self.beam, "batch_size": self.batch_size, "sentences": n, "words": n_words, "tokens": n_tokens,
            "time_s": times,
            "words_per_s": spread([n_words / t for t in times]),
            "tokens_per_s": spread([n_tokens / t for t in times]),
            "sentences_per_s": spread([n / t for t in times]),
        }
        if self.batch_size == 1:
            per_sentence = [x * 1000 for s, _ in passes for x in s]
            row["latency_ms_p50"] = percentile(per_sentence, 0.5)
            row["latency_ms_p95"] = percentile(per_sentence, 0.95)
        return row, [texts[sid][1] for sid in sorted(texts)]


def write_hypotheses(hyp_dir, row, hyps):
    """The row's hypotheses, one a line in subset order, to HYP_DIR/NAME[.ENGINE].beamB.batchN.txt (no ENGINE for
    fairseq's rows); returns the path."""
    name = row["model"].replace(os.sep, "_") + ("" if row["engine"] == "fairseq" else "." + row["engine"])
    path = os.path.abspath(os.path.join(hyp_dir, f"{name}.beam{row['beam']}.batch{row['batch_size']}.txt"))
    atomic_write_lines(path, (h.replace("\n", " ") for h in hyps))
    return path


def load_measured(cfg, task, path, engine_names):
    """The model at `path` loaded for each engine (auto resolved; an engine listed twice is loaded once; of several
    engines, those that cannot decode the model are skipped and said), with the facts of its rows: file size and
    parameter counts."""
    loaded, refused = [], []
    for name in engine_names:
        try:
            one = engines.load(path, cfg, task, name)
        except engines.EngineError as e:  # with several engines, a model is measured with those that support it
            if len(engine_names) == 1:
                raise
            refused.append(str(e))
            continue
        if all(one.engine != other.engine for other in loaded):
            one.facts["engine"] = one.engine
            loaded.append(one)
    if not loaded:
        raise engines.EngineError(refused[0])
    for reason in refused:
        print(f"skipped: {reason}", flush=True)
    return loaded


def check_options(opts):
    if not opts.path:
        raise FairseqKDError("give at least one --path CHECKPOINT")
    if any(b < 1 for b in opts.beam) or any(b < 1 for b in opts.batch_size):
        raise FairseqKDError(f"--beam and --batch-size take values >= 1, got {opts.beam} and {opts.batch_size}")
    if opts.repeats < 1:
        raise FairseqKDError(f"--repeats must be >= 1, got {opts.repeats}")
    for name in opts.engine:
        engines.check_engine(name)
    for p in opts.path:
        if not (os.path.isfile(p) or ctranslate2_engine.is_exported(p)):
            raise FairseqKDError(f"checkpoint not found: {p}")
    # before anything is measured: a bad --output or --hyp-dir fails at once, not after the measurement
    output_file(opts.output, "--output")
    if opts.hyp_dir:
        output_dir(opts.hyp_dir, "--hyp-dir")


def load_sentences(task, cfg, opts):
    """The dataset measured, its name, the ids of the sentences decoded, and their references (or None)."""
    if opts.source_file:
        dataset, subset = raw_source_dataset(task, opts.source_file, opts.spm_model), os.path.abspath(opts.source_file)
    else:
        subset = cfg.dataset.gen_subset
        dataset = inference.load_subset(task, cfg, subset)
    ids = inference.subset_ids(dataset, opts.max_sentences)
    refs = None
    if opts.ref:
        refs = read_lines(opts.ref)
        if len(refs) != len(dataset):
            raise FairseqKDError(f"--ref has {len(refs)} lines, the subset has {len(dataset)} sentences")
        refs = [refs[i] for i in ids]
    return dataset, subset, ids, refs


class Measurement:
    """The rows of one run over one set of sentences: built per model, timed in passes, then scored."""

    def __init__(self, task, cfg, opts, dataset, ids, refs, use_cuda):
        self.task, self.cfg, self.opts = task, cfg, opts
        self.dataset, self.ids, self.refs, self.use_cuda = dataset, ids, refs, use_cuda

    def rows_of(self, name, loaded):
        """Every (engine, beam, batch size) row of a model, built one by one: each warms up just before it is timed."""
        for one in loaded:
            for beam in self.opts.beam:
                for batch_size in self.opts.batch_size:
                    yield name, one.facts, Row(self.task, self.cfg, one, self.dataset, self.ids, beam, batch_size,
                                               self.opts, self.use_cuda, exclusive=self.opts.interleave)

    def measure(self, rows):
        """--repeats timed passes of each row, round-robin over the rows given together; their JSON rows."""
        for _ in range(self.opts.repeats):
            for _, _, row in rows:
                row.time_pass()
        for _, _, row in rows:  # a finished row's Translator must not slow the next row's (Row's docstring)
            row.release()
        return [self.finish(*row) for row in rows]

    def finish(self, name, facts, row_state):
        row, hyps = row_state.result()
        row.update(model=name, **facts)
        if self.refs is not None:
            bleu = corpus_bleu(hyps, self.refs, self.opts.detok, self.cfg.task.target_lang or "de")
            row.update(bleu=bleu["bleu"], bleu_signature=bleu["signature"])
        row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if self.opts.hyp_dir:
            row["hypotheses"] = write_hypotheses(self.opts.hyp_dir, row, hyps)
        bleu_text = "" if self.refs is None else f"  BLEU {row['bleu']:.2f}"
        print(f"{name:<28} {row['engine']:<11} beam {row['beam']:>2} batch {row['batch_size']:>3}: "
              f"{row['words_per_s']['median']:9.1f} words/s{bleu_text}", flush=True)
        return row


def main(argv=None):
    parsed = inference.tool_options(argv, own_options(), __doc__)
    if parsed is None:
        return
    opts, rest = parsed
    check_options(opts)
    cfg = inference.generation_cfg(rest + ["--path", opts.path[0]])
    task = inference.setup(cfg)
    use_cuda = torch.cuda.is_available() and not cfg.common.cpu
    dataset, subset, ids, refs = load_sentences(task, cfg, opts)
    names = opts.name + [os.path.basename(os.path.dirname(os.path.abspath(p))) + "/" + os.path.basename(p)
                         for p in opts.path[len(opts.name):]]
    run = Measurement(task, cfg, opts, dataset, ids, refs, use_cuda)

    if opts.interleave:  # every model loaded at once; each pass goes round all rows
        loaded = [(name, load_measured(cfg, task, path, opts.engine)) for name, path in zip(names, opts.path)]
        results = run.measure([row for name, one in loaded for row in run.rows_of(name, one)])
    else:  # model by model, row by row
        results = []
        for name, path in zip(names, opts.path):
            loaded = load_measured(cfg, task, path, opts.engine)
            for row in run.rows_of(name, loaded):
                results += run.measure([row])
            del loaded

    report = {
        "environment": {
            "fairseq_kd": __version__, "torch": torch.__version__, "fairseq": _fairseq_version(),
            "python": platform.python_version(), "threads": torch.get_num_threads(), "cpu": cpu_model(),
            "visible_cores": ctranslate2_engine.visible_cores(),
            "device": "cuda" if use_cuda else "cpu", "timestamp": datetime.datetime.now().isoformat(timespec="seconds"),
        },
        "data": {"data": os.path.abspath(cfg.task.data), "subset": subset, "sentences": len(ids),
                 "ref": os.path.abspath(opts.ref) if opts.ref else None, "detok": opts.detok,
                 "post_process": cfg.common_eval.post_process, "warmup_batches": opts.warmup, "repeats": opts.repeats,
                 "interleave": opts.interleave},
        "results": results,
    }
    atomic_write_text(opts.output, json.dumps(report, indent=2))
    print(f"wrote {opts.output}")


def _fairseq_version():
    import fairseq

    return fairseq.__version__


if __name__ == "__main__":
    main()
