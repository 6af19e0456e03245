"""Serving engines (fairseq_kd.serving): the fast kd_lstm decoder against fairseq's SequenceGenerator, CTranslate2
against fairseq for a transformer, and fairseq-kd-export / -translate / -speed --engine / -distill --engine end to
end, with their bad inputs."""
import json
import shutil

import pytest
import torch

from fairseq_kd import compression, inference
from fairseq_kd.errors import FairseqKDError
from fairseq_kd.serving import engines
from fairseq_kd.serving.lstm_step import FastGenerator
from fairseq_kd.serving.search import SearchOptions

from helpers import USER_DIR, build_model, error_line, run, tool, train


def decode_all(task, dataset, generator, models, batch_size, ids=None):
    out = {}
    for ids in inference.length_sorted_batches(dataset, ids, batch_size=batch_size):
        sample = inference.collate(dataset, ids, False)
        hypos = task.inference_step(generator, models, sample)
        for i, sid in enumerate(sample["id"].tolist()):
            out[sid] = hypos[i]
    return out


def setup(data, path, *extra):
    cfg = inference.generation_cfg([str(data), "--user-dir", USER_DIR, "--path", str(path), "--gen-subset", "valid",
                                    *extra])
    task = inference.setup(cfg)
    return cfg, task, inference.load_subset(task, cfg, "valid")


def compare(task, cfg, dataset, model, beam, batch_size, ids=None):
    """(sentences whose best hypothesis differs, all sentences, largest score difference of the identical ones)."""
    fairseq = decode_all(task, dataset, inference.build_generator(task, [model], cfg, beam), [model], batch_size, ids)
    fast_gen = FastGenerator(model, task.target_dictionary, SearchOptions.from_generation(cfg.generation, beam=beam))
    fast = decode_all(task, dataset, fast_gen, [model], batch_size, ids)
    differ = [i for i in fairseq if not torch.equal(fairseq[i][0]["tokens"], fast[i][0]["tokens"])]
    same = [i for i in fairseq if i not in differ]
    score_gap = max(abs(float(fairseq[i][0]["score"]) - float(fast[i][0]["score"])) for i in same) if beam > 1 else 0
    return differ, len(fairseq), score_gap


@pytest.fixture(scope="module")
def teacher_setup(tiny_data, tiny_teacher):
    cfg, task, dataset = setup(tiny_data, tiny_teacher)
    models, _ = inference.load_ensemble(cfg, task)
    return cfg, task, dataset, models[0]


@pytest.mark.parametrize("batch_size", [1, 16])
def test_fast_greedy_is_fairseqs_on_every_sentence(teacher_setup, batch_size):
    cfg, task, dataset, model = teacher_setup
    differ, n, _ = compare(task, cfg, dataset, model, beam=1, batch_size=batch_size)
    assert n == len(dataset) and differ == []


def test_fast_beam_is_fairseqs(teacher_setup):
    """Beam 5 with fairseq's rules: the same best hypotheses, their scores equal to float rounding."""
    cfg, task, dataset, model = teacher_setup
    differ, n, gap = compare(task, cfg, dataset, model, beam=5, batch_size=16)
    assert differ == [] and gap < 1e-4


SHAPES = {
    "bidirectional": dict(encoder_bidirectional=True, encoder_layers=2),     # bridge from a 2H encoder, two layers
    "no-feeding": dict(no_input_feeding=True, decoder_out_embed_dim=24),     # no feeding, an out projection
    "tied": dict(share_decoder_input_output_embed=True, decoder_embed_dim=32, encoder_embed_dim=40, decoder_layers=2,
                 encoder_layers=1),                                          # tied output, decoder from zeros
}


def test_fast_decoder_on_every_kd_lstm_shape(tiny_data, tiny_teacher):
    """Untrained models of other shapes (sharp random outputs, hypotheses cut by --max-len-b): greedy and beam 3
    identical to fairseq's on 24 sentences."""
    cfg, task, dataset = setup(tiny_data, tiny_teacher, "--max-len-b", "12")
    for name, overrides in SHAPES.items():
        model = build_model(task, "kd_lstm_1x32", dropout=0.0, **overrides).eval()
        with torch.no_grad():
            model.decoder.output_projection.weight.mul_(20)
        for beam in (1, 3):
            differ, _, gap = compare(task, cfg, dataset, model, beam=beam, batch_size=8, ids=range(24))
            assert differ == [] and gap < 1e-4, (name, beam)


@pytest.mark.parametrize("flags", [dict(sparse=True, int8=False), dict(sparse=True, int8=True)], ids=["sparse", "int8"])
def test_fast_decoder_runs_compressed_files(teacher_setup, tiny_teacher, tmp_path, flags):
    """fairseq-kd-compress files: sparse is the same model, so the same output; int8 runs torch's quantized modules
    in both decoders, and agrees with fairseq's on nearly every sentence."""
    cfg, task, dataset, _ = teacher_setup
    state = torch.load(tiny_teacher, map_location="cpu", weights_only=True)
    small = tmp_path / "small.pt"
    compression.save_compressed(compression.compress_state(state, **flags), str(small))
    loaded = engines.load(str(small), cfg, task, "auto")
    assert loaded.engine == "fast" and loaded.facts["compressed"]
    differ, n, _ = compare(task, cfg, dataset, loaded.models[0], beam=1, batch_size=16)
    assert len(differ) <= (0 if not flags["int8"] else n // 20)


def test_search_length_rules(teacher_setup):
    """--max-len-a/-b cap every hypothesis (EOS forced), --min-len keeps EOS away, as fairseq's."""
    cfg, task, dataset, model = teacher_setup
    sample = inference.collate(dataset, list(range(8)), False)
    src_len = sample["net_input"]["src_tokens"].size(1)
    for beam in (1, 3):
        gen = FastGenerator(model, task.target_dictionary, SearchOptions(beam=beam, max_len_a=0, max_len_b=2))
        hypos = gen.generate([model], sample)
        assert all(len(h[0]["tokens"]) <= 3 and h[0]["tokens"][-1] == task.target_dictionary.eos() for h in hypos)
        gen = FastGenerator(model, task.target_dictionary, SearchOptions(beam=beam, min_len=src_len + 3,
                                                                         max_len_b=src_len + 5))
        assert all(len(h[0]["tokens"]) >= src_len + 4 for h in gen.generate([model], sample))


@pytest.fixture(scope="module")
def transformer(tiny_data, tmp_path_factory):
    save = tmp_path_factory.mktemp("transformer")
    train(tiny_data, save, "--arch", "transformer", "--encoder-layers", "1", "--decoder-layers", "1",
          "--encoder-embed-dim", "32", "--decoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64",
          "--decoder-ffn-embed-dim", "64", "--encoder-attention-heads", "2", "--decoder-attention-heads", "2",
          "--share-decoder-input-output-embed", "--dropout", "0", "--criterion", "label_smoothed_cross_entropy",
          "--label-smoothing", "0.1", epochs=8)
    return save / "checkpoint_last.pt"


@pytest.fixture(scope="module")
def exported(transformer, tiny_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    for q in ("float32", "int8"):
        run([tool("fairseq-kd-export"), transformer, "--data", tiny_data, "--format", "ctranslate2",
             "--quantization", q, "--output", root / q])
    return root


def test_export_writes_a_ctranslate2_model(exported, transformer):
    import ctranslate2

    info = json.loads((exported / "float32" / "fairseq_kd_export.json").read_text())
    assert info["quantization"] == "float32" and info["source_lang"] == "src" and info["target_lang"] == "tgt"
    assert info["checkpoint"]["size"] == transformer.stat().st_size and len(info["checkpoint"]["model_sha256"]) == 64
    out = ctranslate2.Translator(str(exported / "float32")).translate_batch([["s1", "s2", "s3"]], beam_size=1)
    assert out[0].hypotheses[0] and all(t.startswith("t") or t == "<unk>" for t in out[0].hypotheses[0])


def test_ctranslate2_agrees_with_fairseq(exported, transformer, tiny_data):
    """float32 greedy: the same hypothesis on at least 99% of sentences. int8 runs (at 32 dimensions its rounding
    changes many of this tiny model's hypotheses; benchmarks/serving_speed.py measures its BLEU on real data)."""
    cfg, task, dataset = setup(tiny_data, transformer)
    fairseq = engines.load(str(transformer), cfg, task, "fairseq")
    ref = decode_all(task, dataset, engines.build_generator(fairseq, task, cfg, 1), fairseq.models, 16)
    for q, share in (("float32", 0.99), ("int8", 0.25)):
        ct2 = engines.load(str(exported / q), cfg, task, "auto")
        assert ct2.engine == "ctranslate2"
        hyp = decode_all(task, dataset, engines.build_generator(ct2, task, cfg, 1), [], 16)
        same = sum(torch.equal(ref[i][0]["tokens"], hyp[i][0]["tokens"]) for i in ref)
        assert same >= share * len(ref), (q, same, len(ref))


def test_translate_every_engine_end_to_end(tiny_data, tiny_teacher, transformer, exported, tmp_path):
    """Raw lines in, lines out in input order (an empty line stays empty); fast and fairseq write the same file,
    as do CTranslate2 from a checkpoint and from its export."""
    lines = (tiny_data.parent / "raw" / "test.src").read_text().splitlines()[:20]
    lines.insert(3, "")
    src = tmp_path / "in.txt"
    src.write_text("\n".join(lines) + "\n")
    outs = {}
    for name, model, engine, data in [("fast", tiny_teacher, "fast", tiny_data), ("lstm", tiny_teacher, "fairseq", tiny_data),
                                      ("ct2", transformer, "auto", tiny_data), ("dir", exported / "float32", "auto", None)]:
        out = tmp_path / f"{name}.txt"
        proc = run([tool("fairseq-kd-translate"), "--model", model, *(["--data", data] if data else []), "--no-spm",
                    "--engine", engine, "--beam", "2", "--threads", "1", "--batch-tokens", "40", "--input", src,
                    "--output", out])
        outs[name] = out.read_text().splitlines()
        assert len(outs[name]) == len(lines) and outs[name][3] == ""
        assert f"with engine {'ctranslate2' if engine == 'auto' else engine}" in proc.stderr
    assert outs["fast"] == outs["lstm"] and outs["ct2"] == outs["dir"]
    # reversal task: the teacher's output for s1 s2 s3 ... is mostly t-words
    assert all(w.startswith("t") or w == "<unk>" for line in outs["fast"] for w in line.split())


def test_speed_and_table_with_engines(tiny_data, tiny_teacher, exported, tmp_path):
    out = tmp_path / "speed.json"
    run([tool("fairseq-kd-speed"), tiny_data, "--user-dir", USER_DIR, "--path", tiny_teacher, "--name", "teacher",
         "--path", exported / "float32", "--name", "transformer", "--engine", "fairseq", "auto", "--gen-subset", "test",
         "--beam", "1", "--batch-size", "8", "--threads", "1", "--max-sentences", "16", "--warmup", "1",
         "--repeats", "1", "--ref", tiny_data.parent / "raw" / "test.tgt", "--output", out, "--hyp-dir", tmp_path / "h"])
    rows = json.loads(out.read_text())["results"]
    assert [(r["model"], r["engine"]) for r in rows] == [("teacher", "fairseq"), ("teacher", "fast"),
                                                          ("transformer", "ctranslate2")]
    assert rows[0]["bleu"] == rows[1]["bleu"] and rows[0]["words"] == rows[1]["words"]
    assert open(rows[0]["hypotheses"]).read() == open(rows[1]["hypotheses"]).read()
    assert rows[2]["file_size_bytes"] == (exported / "float32" / "model.bin").stat().st_size
    md = tmp_path / "t.md"
    run([tool("fairseq-kd-table"), out, "--output-md", md, "--batch-size", "8", "--beam", "1"])
    text = md.read_text()
    assert "| Model | Engine |" in text and "| teacher | fast |" in text and "against teacher (fairseq)" in text
    fast_row = next(line for line in text.splitlines() if line.startswith("| teacher | fast |"))
    speedup = float(fast_row.split("|")[11].strip().rstrip("x"))
    assert speedup == pytest.approx(rows[1]["words_per_s"]["median"] / rows[0]["words_per_s"]["median"], abs=0.051)


def test_distill_with_the_fast_engine_writes_the_same_corpus(tiny_data, tiny_teacher, tmp_path):
    outs = {}
    for engine in ("fairseq", "fast"):
        dest = tmp_path / engine
        proc = run([tool("fairseq-kd-distill"), tiny_data, "--user-dir", USER_DIR, "--path", tiny_teacher,
                    "--gen-subset", "valid", "--beam", "3", "--nbest", "2", "--destdir", dest, "--engine", engine,
                    "--threads", "1", "--chunk-size", "25"])
        assert f"decoding with engine {engine}" in proc.stdout
        outs[engine] = [(dest / f).read_text() for f in ("valid.src", "valid.tgt")]
        outs[engine].append([line.split("\t")[:2] + line.split("\t")[3:]
                             for line in (dest / "valid.nbest.tgt").read_text().splitlines()])
    assert outs["fast"] == outs["fairseq"]


def test_bad_inputs_get_one_line(tiny_data, tiny_teacher, transformer, tmp_path):
    proc = run([tool("fairseq-kd-export"), tiny_teacher, "--data", tiny_data, "--output", tmp_path / "x"], check=False)
    assert "kd_lstm model: CTranslate2 converts fairseq transformers only" in error_line(proc)
    assert not (tmp_path / "x").exists()
    proc = run([tool("fairseq-kd-translate"), "--model", tiny_teacher, "--data", tiny_data, "--spm-model",
                tmp_path / "none.model"], check=False)
    assert "--spm-model not found" in error_line(proc)
    from fairseq_kd.cli import translate

    for argv, message in [
        (["--engine", "turbo", "--no-spm"], "unknown engine 'turbo'"),
        (["--engine", "ctranslate2", "--no-spm"], "CTranslate2 converts fairseq transformers only"),
        (["--no-spm", "--beam", "0"], "--beam must be >= 1"),
        ([], "give --spm-model"),
    ]:
        with pytest.raises(FairseqKDError, match=message):
            translate.main(["--model", str(tiny_teacher), "--data", str(tiny_data), "--input", "/dev/null", *argv])
    with pytest.raises(FairseqKDError, match="the fast decoder runs one kd_lstm model, this is a TransformerModel"):
        translate.main(["--model", str(transformer), "--data", str(tiny_data), "--no-spm", "--engine", "fast",
                        "--input", "/dev/null"])
    with pytest.raises(FairseqKDError, match="is a checkpoint: give --data"):
        translate.main(["--model", str(tiny_teacher), "--no-spm"])


def test_export_refuses_what_ctranslate2_cannot_convert(tiny_data, transformer, tmp_path):
    """Different head counts in the encoder and decoder: CTranslate2's own reason, and nothing written."""
    from fairseq_kd.cli import export

    state = torch.load(transformer, map_location="cpu", weights_only=True)
    state["cfg"]["model"].decoder_attention_heads = 4
    odd = tmp_path / "odd.pt"
    torch.save(state, odd)
    with pytest.raises(FairseqKDError, match="--encoder-attention-heads and --decoder-attention-heads must have the same"):
        export.main([str(odd), "--data", str(tiny_data), "--output", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".export-*"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(FairseqKDError, match="is a file, not a directory"):
        export.main([str(transformer), "--data", str(tiny_data), "--output", str(tmp_path / "file")])


def test_export_translate_speed_bad_inputs(tiny_data, transformer, exported, tmp_path):
    """Each gets one line and writes nothing: data with another vocabulary, an existing --output without --force
    (and --force on a directory that is not an export), a fairseq-kd-compress file, --input a directory, and a
    speed engine that cannot decode the model."""
    from fairseq_kd.cli import export, speed, translate

    other = tmp_path / "other_data"
    other.mkdir()
    for f in tiny_data.iterdir():
        (other / f.name).write_bytes(f.read_bytes())
    lines = (other / "dict.tgt.txt").read_text().splitlines()
    (other / "dict.tgt.txt").write_text("\n".join(lines[:-3]) + "\n")  # three symbols fewer
    with pytest.raises(FairseqKDError, match=rf"has a decoder vocabulary of \d+ symbols, {other}/dict.tgt.txt has "
                                             rf"\d+: give --data the directory the model was trained with"):
        export.main([str(transformer), "--data", str(other), "--output", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".export-*"))

    before = (exported / "float32" / "model.bin").stat().st_mtime_ns
    with pytest.raises(FairseqKDError, match="exists: remove it, or replace it with --force"):
        export.main([str(transformer), "--data", str(tiny_data), "--output", str(exported / "float32")])
    assert (exported / "float32" / "model.bin").stat().st_mtime_ns == before
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("mine")
    with pytest.raises(FairseqKDError, match="is not an earlier export: --force replaces exports only"):
        export.main([str(transformer), "--data", str(tiny_data), "--output", str(tmp_path / "mine"), "--force"])
    assert (tmp_path / "mine" / "keep.txt").read_text() == "mine"

    compressed = tmp_path / "small.pt"
    run([tool("fairseq-kd-compress"), transformer, "--output", compressed, "--int8"])
    proc = run([tool("fairseq-kd-export"), compressed, "--data", tiny_data, "--output", tmp_path / "c"], check=False)
    assert "is a fairseq-kd-compress file: export the checkpoint it was made from" in error_line(proc)
    assert not (tmp_path / "c").exists()

    with pytest.raises(FairseqKDError, match=f"--input {tmp_path} is a directory: give a text file"):
        translate.main(["--model", str(transformer), "--data", str(tiny_data), "--no-spm", "--input", str(tmp_path)])

    broken = tmp_path / "broken"  # an export whose model.bin was cut short (a full disk, an interrupted copy)
    shutil.copytree(exported / "float32", broken)
    data = (broken / "model.bin").read_bytes()
    (broken / "model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(FairseqKDError, match=f"{broken} is not a CTranslate2 model it can load .*: export it again"):
        translate.main(["--model", str(broken), "--no-spm", "--input", str(tiny_data / "dict.src.txt")])

    out = tmp_path / "speed.json"
    proc = run([tool("fairseq-kd-speed"), tiny_data, "--user-dir", USER_DIR, "--path", transformer, "--engine", "fast",
                "--gen-subset", "valid", "--output", out], check=False)
    assert "this is a TransformerModel" in error_line(proc)
    assert not out.exists()


def test_ctranslate2_loads_before_torch(tmp_path, caplog):
    """fairseq_kd/openmp_first.py: importing fairseq_kd in a fresh process loads ctranslate2's native library before
    torch's (torch is then imported by fairseq_kd itself); a process that had torch first is recorded, and the engine
    warns once when it decodes with more than one thread there."""
    import subprocess
    import sys

    probe = ("import sys; {pre}import fairseq_kd.openmp_first as o; "
             "print(o.LOADED_AFTER_TORCH, 'ctranslate2' in sys.modules, 'torch' in sys.modules)")
    fresh = subprocess.run([sys.executable, "-c", probe.format(pre="")], capture_output=True, text=True, check=True)
    assert fresh.stdout.split() == ["False", "True", "True"]
    late = subprocess.run([sys.executable, "-c", probe.format(pre="import torch; ")], capture_output=True, text=True,
                          check=True)
    assert late.stdout.split()[0] == "True"

    from fairseq_kd import openmp_first
    from fairseq_kd.serving import ctranslate2_engine

    class Translator:
        def __init__(self, *args, **kwargs):
            self.kwargs = kwargs

    class FakeCT2:
        pass

    FakeCT2.Translator = Translator
    saved = openmp_first.LOADED_AFTER_TORCH, list(ctranslate2_engine._warned), ctranslate2_engine.require_ctranslate2
    try:
        ctranslate2_engine._warned.clear()
        ctranslate2_engine._warned_cores[:] = [True]  # the warning about more threads than cores: the next test
        ctranslate2_engine.require_ctranslate2 = lambda: FakeCT2
        openmp_first.LOADED_AFTER_TORCH = True
        with caplog.at_level("WARNING"):
            t = ctranslate2_engine.translator(str(tmp_path), 1)
            assert t.kwargs["intra_threads"] == 1 and not caplog.records  # one thread: no clash
            ctranslate2_engine.translator(str(tmp_path), 2)
            ctranslate2_engine.translator(str(tmp_path), 2)
        assert len(caplog.records) == 1 and "loaded after torch" in caplog.records[0].getMessage()
        caplog.clear()
        openmp_first.LOADED_AFTER_TORCH = False
        ctranslate2_engine._warned.clear()
        with caplog.at_level("WARNING"):
            ctranslate2_engine.translator(str(tmp_path), 2)
        assert not caplog.records
    finally:
        openmp_first.LOADED_AFTER_TORCH, ctranslate2_engine._warned[:], ctranslate2_engine.require_ctranslate2 = saved
        ctranslate2_engine._warned_cores.clear()


def test_ctranslate2_more_threads_than_cores_warns_once(tmp_path, caplog, monkeypatch):
    from fairseq_kd.serving import ctranslate2_engine

    class FakeCT2:
        Translator = staticmethod(lambda *args, **kwargs: kwargs)

    monkeypatch.setattr(ctranslate2_engine, "require_ctranslate2", lambda: FakeCT2)
    monkeypatch.setattr(ctranslate2_engine.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(ctranslate2_engine, "_warned_cores", [])
    monkeypatch.setattr(ctranslate2_engine.openmp_first, "LOADED_AFTER_TORCH", False)
    with caplog.at_level("WARNING"):
        assert ctranslate2_engine.translator(str(tmp_path), 2)["intra_threads"] == 2 and not caplog.records
        ctranslate2_engine.translator(str(tmp_path), 3)
        ctranslate2_engine.translator(str(tmp_path), 4)
    assert len(caplog.records) == 1
    assert caplog.records[0].getMessage().startswith("3 threads for CTranslate2 on 2 cores")


def test_interleaved_ctranslate2_rows_hold_their_translator_only_while_timed(exported, transformer, tiny_data):
    """--interleave keeps every row at once; a CTranslate2 row releases its Translator between its passes (two that
    have decoded slow each other several times over) and decodes the same hypotheses as a row that keeps it."""
    from types import SimpleNamespace

    from fairseq_kd.cli.speed import Row

    cfg, task, dataset = setup(tiny_data, transformer)
    ct2 = engines.load(str(exported / "float32"), cfg, task, "ctranslate2")
    ids = inference.subset_ids(dataset, None)
    opts = SimpleNamespace(warmup=1)
    kept = Row(task, cfg, ct2, dataset, ids, 1, 8, opts, False)
    shared = Row(task, cfg, ct2, dataset, ids, 1, 8, opts, False, exclusive=True)
    assert not kept.generator.released and shared.generator.released
    for _ in range(2):
        kept.time_pass()
        shared.time_pass()
        assert shared.generator.released and not kept.generator.released
    assert len(shared.passes) == 2 and all(len(s) == len(shared.batches) for s, _ in shared.passes)
    assert shared.result()[1] == kept.result()[1]
    kept.release()
    assert kept.generator.released
    # with --warmup 0 too, the Translator is loaded before the timed pass, not inside it
    import fairseq_kd.cli.speed as speed

    cold = Row(task, cfg, ct2, dataset, ids, 1, 8, SimpleNamespace(warmup=0), False, exclusive=True)
    loaded_when_timed = []
    timed = speed.timed_pass
    try:
        speed.timed_pass = lambda *a: loaded_when_timed.append(not cold.generator.released) or timed(*a)
        cold.time_pass()
    finally:
        speed.timed_pass = timed
    assert loaded_when_timed == [True] and cold.generator.released and cold.result()[1] == kept.result()[1]
    fairseq = engines.load(str(transformer), cfg, task, "fairseq")
    row = Row(task, cfg, fairseq, dataset, ids, 1, 8, opts, False, exclusive=True)  # a fairseq row has nothing to release
    assert not row.exclusive
    row.time_pass()
    row.release()
