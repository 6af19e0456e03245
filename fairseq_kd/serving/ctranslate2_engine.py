"""CTranslate2 for fairseq transformers: export through CTranslate2's own FairseqConverter, decode with
ctranslate2.Translator behind fairseq's generator interface.

The converter registers the data's dictionaries as the model's vocabularies (<pad> renamed <blank>), adds EOS
to each source and starts decoding from EOS, as fairseq does; so a batch of fairseq source ids goes in as their
symbols (without pad and EOS) and the symbols that come out map back to the same ids.
"""
import json
import logging
import os
import shutil
import tempfile
import threading
from typing import List

import torch

from .. import openmp_first
from ..errors import FairseqKDError
from ..outputs import atomic_write_text, output_dir

logger = logging.getLogger(__name__)
QUANTIZATIONS = ("float32", "int8", "int8_float32")
_warned = []
_warned_cores = []
EXPORT_INFO = "fairseq_kd_export.json"


def require_ctranslate2():
    try:
        import ctranslate2
    except ImportError as e:  # a normal dependency; only a broken install lacks it
        raise FairseqKDError(f"ctranslate2 is not installed ({e}): pip install ctranslate2==4.8.5") from e
    return ctranslate2


def is_exported(path: str) -> bool:
    """A directory written by CTranslate2's converter."""
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, "model.bin"))


def check_convertible(model_cfg, path: str):
    """One line for a model CTranslate2 cannot take, before its converter is run."""
    arch = getattr(model_cfg, "arch", None) or getattr(model_cfg, "_name", None)
    if arch is not None and arch.startswith("kd_lstm"):
        raise FairseqKDError(f"{path} is a kd_lstm model: CTranslate2 converts fairseq transformers only (it has no "
                             f"RNN models); decode it with the fast decoder: --engine fast")


def export(checkpoint: str, data: str, out: str, quantization: str = "float32", source_lang=None, target_lang=None):
    """Convert `checkpoint` with CTranslate2's FairseqConverter into the directory `out` (written whole or not at
    all). Returns the export's facts, also written to OUT/fairseq_kd_export.json."""
    ctranslate2 = require_ctranslate2()
    from ctranslate2.converters import FairseqConverter

    from ..compression import is_compressed
    from ..provenance import checkpoint_identity

    if quantization not in QUANTIZATIONS:
        raise FairseqKDError(f"--quantization must be one of {', '.join(QUANTIZATIONS)}, got {quantization}")
    if not os.path.isfile(checkpoint):
        raise FairseqKDError(f"checkpoint not found: {checkpoint}")
    if is_compressed(checkpoint):
        raise FairseqKDError(f"{checkpoint} is a fairseq-kd-compress file: export the checkpoint it was made from "
                             f"(CTranslate2 quantizes by itself: --quantization int8)")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    cfg = state.get("cfg") or {}
    model_cfg = state.get("args") or (cfg.get("model") if hasattr(cfg, "get") else None)
    check_convertible(model_cfg, checkpoint)
    task_cfg = cfg.get("task") if hasattr(cfg, "get") else None
    source_lang = source_lang or getattr(task_cfg, "source_lang", None) or (task_cfg or {}).get("source_lang")
    target_lang = target_lang or getattr(task_cfg, "target_lang", None) or (task_cfg or {}).get("target_lang")
    if not (source_lang and target_lang):  # as fairseq's translation task: from the data's dict.SRC/TGT.txt
        from fairseq.data import data_utils

        inferred = data_utils.infer_language_pair(data)
        if inferred[0] is None:
            raise FairseqKDError(f"--data {data} has no dict.SRC.txt / dict.TGT.txt pair: give --source-lang and "
                                 f"--target-lang")
        source_lang, target_lang = source_lang or inferred[0], target_lang or inferred[1]
    check_dictionaries(checkpoint, state["model"], data, source_lang, target_lang)
    output_dir(os.path.dirname(os.path.abspath(out)) or ".", "--output's parent")
    if os.path.exists(out):
        raise FairseqKDError(f"--output {out} exists: remove it or choose another directory")
    user_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    converter = FairseqConverter(checkpoint, data, source_lang=source_lang, target_lang=target_lang, user_dir=user_dir)
    tmp = tempfile.mkdtemp(prefix=".export-", dir=os.path.dirname(os.path.abspath(out)))
    try:
        try:
            converter.convert(tmp, quantization=None if quantization == "float32" else quantization, force=True)
        except ValueError as e:  # CTranslate2's ConfigurationChecker: the reasons, one per line
            reasons = "; ".join(line.strip("- ").strip() for line in str(e).splitlines()[1:] if line.strip()) or str(e)
            raise FairseqKDError(f"CTranslate2 cannot convert {checkpoint}: {reasons}") from e
        info = {"checkpoint": checkpoint_identity(checkpoint), "data": os.path.abspath(data),
                "source_lang": source_lang, "target_lang": target_lang, "quantization": quantization,
                "ctranslate2": ctranslate2.__version__,
                **weight_counts(state["model"])}
        atomic_write_text(os.path.join(tmp, EXPORT_INFO), json.dumps(info, indent=2))
        os.replace(tmp, out)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp)
    return info


def check_dictionaries(checkpoint: str, model_state, data: str, source_lang: str, target_lang: str):
    """The converter builds the model from DATA's dictionaries: each must have as many symbols as the checkpoint's
    embeddings have rows, or the export would fail deep in torch (or, by the same size, map the wrong words)."""
    from fairseq.data import Dictionary

    from ..teacher import embedding_rows

    for side, lang in (("encoder", source_lang), ("decoder", target_lang)):
        path = os.path.join(data, f"dict.{lang}.txt")
        if not os.path.isfile(path):
            raise FairseqKDError(f"--data {data} has no dict.{lang}.txt")
        rows, symbols = embedding_rows(model_state, side), len(Dictionary.load(path))
        if rows is not None and rows != symbols:
            raise FairseqKDError(f"{checkpoint} has a {side} vocabulary of {rows} symbols, {path} has {symbols}: "
                                 f"give --data the directory the model was trained with")


def weight_counts(state_dict) -> dict:
    """Total and nonzero weights of a state dict, a tied tensor counted once (as model.parameters() counts)."""
    unique = {}
    for t in state_dict.values():
        if torch.is_tensor(t) and t.is_floating_point():
            unique.setdefault((t.data_ptr(), t.numel()), t)
    return {"params_total": sum(t.numel() for t in unique.values()),
            "params_nonzero": sum(int(torch.count_nonzero(t)) for t in unique.values())}


def read_vocabulary(directory: str, side: str) -> List[str]:
    """The export's source or target vocabulary (one shared file when the dictionaries were joined)."""
    path = os.path.join(directory, f"{side}_vocabulary.json")
    if not os.path.isfile(path):
        path = os.path.join(directory, "shared_vocabulary.json")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def check_vocabulary(directory: str, dictionary, side: str):
    """The export's vocabulary must be the data's dictionary, symbol for symbol (else ids would not map)."""
    vocab = read_vocabulary(directory, side)
    expected = ["<blank>" if s == "<pad>" else s for s in dictionary.symbols]
    if vocab != expected:
        raise FairseqKDError(f"{directory} was exported with another {side} dictionary than this data's "
                             f"({len(vocab)} against {len(expected)} symbols): export it with this --data")


def visible_cores():
    """The cores this process may run on (its affinity mask, as a container or taskset limits it), not the host's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def translator(directory: str, threads: int, compute_type: str = "default"):
    ctranslate2 = require_ctranslate2()
    cores = visible_cores()
    if cores and threads > cores and not _warned_cores:
        _warned_cores.append(True)
        logger.warning("%d threads for CTranslate2 on %d cores: more OpenMP threads than cores make it several times "
                       "slower (CT2Generator's docstring); give --threads %d", threads, cores, cores)
    if openmp_first.LOADED_AFTER_TORCH and threads > 1 and not _warned:
        _warned.append(True)
        logger.warning("ctranslate2 was loaded after torch in this process, so with %d threads it may decode several "
                       "times slower (fairseq_kd/openmp_first.py): import fairseq_kd before torch, or run the "
                       "fairseq-kd-* commands", threads)
    # built in a thread of its own: loading an int8 model runs OpenMP in the calling thread, whose team would then
    # stay alive beside the Translator's for the life of the process (the demo teacher's float32 Translator decoded
    # 947 instead of 5,558 target tokens/s after an int8 one had been built in the main thread and deleted; 6,399 when
    # it had been built in a thread: docs/results/ctranslate2_openmp/load_thread.txt)
    built, failed = [], []

    def build():
        try:
            built.append(ctranslate2.Translator(directory, device="cpu", compute_type=compute_type, inter_threads=1,
                                                intra_threads=threads))
        except BaseException as e:  # re-raised in the caller's thread
            failed.append(e)

    worker = threading.Thread(target=build, name="ctranslate2-load")
    worker.start()
    worker.join()
    if failed:
        if isinstance(failed[0], RuntimeError):  # a truncated or corrupt model.bin, a file of another version
            raise FairseqKDError(f"{directory} is not a CTranslate2 model it can load ({failed[0]}): export it again "
                                 "with fairseq-kd-export --force") from failed[0]
        raise failed[0]
    return built[0]


class CT2Generator:
    """fairseq's generator interface over a ctranslate2.Translator: hypotheses in the data's target ids.

    One process should hold one Translator that has decoded at a time: each keeps its worker thread's OpenMP team
    alive, and once more OpenMP threads exist than cores, libgomp lets waiting threads sleep almost at once, so every
    one of the decoder's many short parallel regions waits on a wake-up. On this project's 2 cores a second
    Translator that had decoded made the first 4.2x slower (4+4-layer 128-dim teacher, greedy: 6,503 -> 1,546 target
    tokens/s, at 0.94 CPU seconds per wall second), as one Translator with intra_threads=3 did (979); deleting the
    second restored it (6,598; docs/results/ctranslate2_openmp/openmp.json). `release()` deletes the Translator
    (joining its threads); `load()`, or the next `generate`, loads it again.
    """

    def __init__(self, directory: str, src_dict, tgt_dict, opts, threads: int):
        check_vocabulary(directory, src_dict, "source")
        check_vocabulary(directory, tgt_dict, "target")
        self.directory, self.threads = directory, threads
        self.translator = translator(directory, threads)
        self.src_dict, self.tgt_dict, self.opts = src_dict, tgt_dict, opts
        self.symbols = [s for s in read_vocabulary(directory, "source")]
        self.target_ids = {s: i for i, s in enumerate(read_vocabulary(directory, "target"))}
        self.nbest = 1

    def release(self):
        """Delete the Translator and with it its threads (see the class docstring); `generate` reloads it."""
        self.translator = None

    def load(self):
        """The Translator again after `release()` (nothing to do while it is loaded)."""
        if self.translator is None:
            self.translator = translator(self.directory, self.threads)

    @property
    def released(self) -> bool:
        return self.translator is None

    def generate(self, models, sample, **kwargs):
        src = sample["net_input"]["src_tokens"]
        pad, eos = self.src_dict.pad(), self.src_dict.eos()
        batch = [[self.symbols[t] for t in row if t != pad and t != eos] for row in src.tolist()]
        return self.translate(batch, src.size(1))

    def translate(self, batch: List[List[str]], padded_len: int):
        from .search import max_length

        opts = self.opts
        max_len = max_length(opts, padded_len, 1 << 30)
        self.load()
        results = self.translator.translate_batch(
            batch, beam_size=opts.beam, num_hypotheses=max(self.nbest, 1), max_decoding_length=max_len,
            min_decoding_length=opts.min_len, length_penalty=opts.lenpen if opts.normalize_scores else 0.0,
            return_scores=True)
        eos, unk = self.tgt_dict.eos(), self.tgt_dict.unk()
        out = []
        for r in results:
            hyps = []
            for tokens, score in zip(r.hypotheses, r.scores):
                ids = [self.target_ids.get(t, unk) for t in tokens] + [eos]
                hyps.append({"tokens": torch.tensor(ids, dtype=torch.long), "score": torch.tensor(score)})
            out.append(hyps)
        return out
