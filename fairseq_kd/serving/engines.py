"""Which engine decodes which model, and one generator interface over them.

    model                                       engines (auto picks the first)
    kd_lstm checkpoint or fairseq-kd-compress   fast, fairseq
    fairseq transformer checkpoint              ctranslate2 (converted into a temporary directory), fairseq
    a directory of fairseq-kd-export            ctranslate2
    any other fairseq model, or an ensemble     fairseq

`build_generator` returns an object with fairseq's `generate(models, sample)`, so the tools run every engine
through the same `task.inference_step` and batches, and compare their rows.
"""
import atexit
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import List, Optional

import torch

from .. import compression, inference
from ..errors import FairseqKDError
from . import ctranslate2_engine
from .lstm_step import FastGenerator, is_kd_lstm
from .search import SearchOptions, unsupported_generation_options

ENGINES = ("auto", "fairseq", "fast", "ctranslate2")


class EngineError(FairseqKDError):
    """An engine that does not exist, or that cannot decode the model given."""


@dataclass
class Loaded:
    """A model ready for one engine: fairseq models (fairseq, fast) or a CTranslate2 directory."""
    engine: str
    path: str
    models: List = field(default_factory=list)
    ct2_dir: Optional[str] = None
    facts: dict = field(default_factory=dict)


def check_engine(engine: str):
    if engine not in ENGINES:
        raise EngineError(f"unknown engine '{engine}' (engines: {', '.join(ENGINES)})")


def supported_engines(path: str, models) -> List[str]:
    """The engines that can decode the model at `path` (loaded as `models` unless it is an export), fastest first."""
    if ctranslate2_engine.is_exported(path):
        return ["ctranslate2"]
    if len(models) == 1 and is_kd_lstm(models[0]):
        return ["fast", "fairseq"]
    if len(models) == 1 and type(models[0]).__name__ == "TransformerModel" and not compression.is_compressed(path):
        return ["ctranslate2", "fairseq"]
    return ["fairseq"]


def resolve(engine: str, path: str, models) -> str:
    check_engine(engine)
    supported = supported_engines(path, models)
    if engine == "auto":
        return supported[0]
    if engine not in supported:
        raise EngineError(f"--engine {engine} cannot decode {path}: {why_not(engine, path, models)}; "
                             f"its engines: {', '.join(supported)}")
    return engine


def why_not(engine: str, path: str, models) -> str:
    if ctranslate2_engine.is_exported(path):
        return "it is a CTranslate2 export, which only CTranslate2 decodes"
    if engine == "fast":
        kind = "an ensemble" if len(models) > 1 else f"a {type(models[0]).__name__}"
        return f"the fast decoder runs one kd_lstm model, this is {kind}"
    if len(models) == 1 and is_kd_lstm(models[0]):
        return "CTranslate2 converts fairseq transformers only (it has no RNN models): use --engine fast"
    if compression.is_compressed(path):
        return "a fairseq-kd-compress file; export the checkpoint it was made from (fairseq-kd-export --quantization int8)"
    return "CTranslate2 converts one fairseq transformer"


def load(path: str, cfg, task, engine: str = "auto") -> Loaded:
    """The model at `path` for `engine` (auto: the fastest that supports it), with the facts of a speed row."""
    check_engine(engine)
    if ctranslate2_engine.is_exported(path):
        resolve(engine, path, [])
        return Loaded("ctranslate2", path, ct2_dir=path, facts=export_facts(path))
    if not os.path.isfile(path):
        raise FairseqKDError(f"model not found: {path} (a checkpoint, a fairseq-kd-compress file or a "
                             f"fairseq-kd-export directory)")
    models, facts = load_models(cfg, task, path)
    loaded = for_models(engine, path, models, cfg.task.data)
    loaded.facts = facts
    return loaded


def for_models(engine: str, path: str, models, data: str) -> Loaded:
    """`models` (already loaded from `path`, fairseq's A[:B] for an ensemble) for `engine`."""
    name = resolve(engine, path, models)
    loaded = Loaded(name, path, models=models)
    if name == "ctranslate2":  # a transformer checkpoint: converted once, for this process
        loaded.ct2_dir, loaded.models = temporary_export(path, data), []
    return loaded


def load_models(cfg, task, path):
    """fairseq models of a checkpoint or compressed file, and their facts (file size, parameters; a compressed file's
    stored counts, as its int8 modules hide their weights from parameters())."""
    facts = {"path": os.path.abspath(path), "file_size_bytes": os.path.getsize(path)}
    if compression.is_compressed(path):
        model, counts = compression.load_model(path, task)
        models = inference.prepare_for_inference([model], cfg)
        return models, dict(facts, params_total=counts["params_total"], params_nonzero=counts["params_nonzero"],
                            compressed=True)
    models, _ = inference.load_ensemble(cfg, task, [path])
    params = [p for m in models for p in m.parameters()]
    return models, dict(facts, params_total=sum(p.numel() for p in params),
                        params_nonzero=sum(int(torch.count_nonzero(p)) for p in params), compressed=False)


def export_facts(directory: str) -> dict:
    import json

    facts = {"path": os.path.abspath(directory), "file_size_bytes": os.path.getsize(os.path.join(directory, "model.bin")),
             "compressed": False}
    info_path = os.path.join(directory, ctranslate2_engine.EXPORT_INFO)
    if os.path.isfile(info_path):
        with open(info_path) as f:
            info = json.load(f)
        facts.update(quantization=info.get("quantization"))
        if "params_total" in info:
            facts.update(params_total=info["params_total"], params_nonzero=info["params_nonzero"])
    return facts


_TEMPORARY = []


def temporary_export(checkpoint: str, data: str) -> str:
    root = tempfile.mkdtemp(prefix="fairseq_kd_ct2_")
    if not _TEMPORARY:
        atexit.register(lambda: [shutil.rmtree(d, ignore_errors=True) for d in _TEMPORARY])
    _TEMPORARY.append(root)
    out = os.path.join(root, "model")
    ctranslate2_engine.export(checkpoint, data, out)
    return out


def build_generator(loaded: Loaded, task, cfg, beam: int, nbest: int = 1):
    """A generator for `loaded`'s engine with fairseq's generation options (cfg.generation) at `beam` / `nbest`."""
    if loaded.engine == "fairseq":
        return inference.build_generator(task, loaded.models, cfg, beam, nbest)
    unsupported = unsupported_generation_options(cfg.generation)
    if unsupported:
        raise FairseqKDError(f"--engine {loaded.engine} does not implement {', '.join(unsupported)}: use --engine fairseq")
    if nbest > beam:
        raise FairseqKDError(f"--nbest ({nbest}) cannot be larger than --beam ({beam})")
    opts = SearchOptions.from_generation(cfg.generation, beam=beam)
    if loaded.engine == "fast":
        return FastGenerator(loaded.models[0], task.target_dictionary, opts, nbest)
    gen = ctranslate2_engine.CT2Generator(loaded.ct2_dir, task.source_dictionary, task.target_dictionary, opts,
                                          torch.get_num_threads())
    gen.nbest = nbest
    return gen
