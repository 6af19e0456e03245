"""The transformer track: the named kd_transformer sizes, fairseq-kd-average, int8 compression of a transformer."""
import re

import pytest
import torch

import fairseq_kd  # noqa: F401
from fairseq_kd import compression
from fairseq_kd.errors import FairseqKDError

from helpers import TINY_TRAIN, USER_DIR, build_model, error_line, run, tool


def transformer_params(src_vocab, tgt_vocab, dim, ffn, enc, dec, pre_norm):
    """fairseq's transformer with the decoder's output layer tied to its embeddings (with a joined dictionary,
    --share-all-embeddings makes that one matrix for all three), sinusoidal positions (no weights): per encoder
    layer self-attention (4 dim x dim + biases), ffn (2 matrices + biases), 2 layer norms; per decoder layer also
    the encoder attention and a third layer norm; pre-norm adds a final layer norm to the encoder and the decoder."""
    attention = 4 * (dim * dim + dim)
    feed_forward = dim * ffn + ffn + ffn * dim + dim
    norm = 2 * dim
    return ((src_vocab + tgt_vocab) * dim + enc * (attention + feed_forward + 2 * norm)
            + dec * (2 * attention + feed_forward + 3 * norm) + (2 * norm if pre_norm else 0))


@pytest.mark.parametrize("arch,dims", [("kd_transformer_e6d1_128", (128, 512, 6, 1, True)),
                                       ("kd_transformer_e3d3_256", (256, 1024, 3, 3, False)),
                                       ("kd_transformer_e4d4_128", (128, 512, 4, 4, False)),
                                       ("kd_transformer_e6d1_64", (64, 256, 6, 1, True)),
                                       ("kd_transformer_e2d1_32", (32, 64, 2, 1, True))])
def test_named_sizes_have_the_parameters_counted_by_hand(tiny_task, arch, dims):
    model = build_model(tiny_task, arch=arch)
    assert type(model).__name__ == "TransformerModel"  # fairseq's own model: CTranslate2's converter takes it
    vocab = len(tiny_task.source_dictionary), len(tiny_task.target_dictionary)
    assert sum(p.numel() for p in model.parameters()) == transformer_params(*vocab, *dims)
    enc, dec = model.encoder.layers, model.decoder.layers
    assert (len(enc), len(dec)) == dims[2:4]
    assert enc[0].normalize_before == dec[0].normalize_before == dims[4]  # CTranslate2 needs them equal too
    assert enc[0].self_attn.num_heads == dec[0].self_attn.num_heads  # CTranslate2 needs one head count
    assert model.decoder.output_projection.weight is model.decoder.embed_tokens.weight


@pytest.fixture(scope="module")
def epochs(tiny_data, tmp_path_factory):
    """A tiny transformer trained 3 epochs, every epoch checkpoint kept."""
    save = tmp_path_factory.mktemp("epochs")
    options = [o for o in TINY_TRAIN if o != "--no-epoch-checkpoints"]
    run([tool("fairseq-train"), tiny_data, "--user-dir", USER_DIR, "--save-dir", save, "--max-epoch", "3", *options,
         "--arch", "kd_transformer_e2d1_32", "--keep-last-epochs", "5"])
    return save


def test_average_is_the_mean_of_the_last_epochs(epochs, tiny_data, tmp_path):
    out = run([tool("fairseq-kd-average"), epochs, "--last", "2", "--output", tmp_path / "avg.pt"]).stdout
    assert "the average of 2 checkpoints (checkpoint2.pt, checkpoint3.pt)" in out
    avg = torch.load(tmp_path / "avg.pt", weights_only=False)
    two, three = (torch.load(epochs / f"checkpoint{e}.pt", weights_only=False)["model"] for e in (2, 3))
    for k, v in avg["model"].items():
        assert v.dtype == two[k].dtype
        torch.testing.assert_close(v, (two[k].double() + three[k].double()).div(2).to(v.dtype), rtol=0, atol=1e-7)
    assert "last_optimizer_state" not in avg and avg["cfg"]["model"].arch == "kd_transformer_e2d1_32"
    # explicit files give the same; the average of one model with itself is that model
    from fairseq_kd.cli import average

    average.main([str(epochs / "checkpoint2.pt"), str(epochs / "checkpoint3.pt"), "--output", str(tmp_path / "b.pt")])
    assert all(torch.equal(v, torch.load(tmp_path / "b.pt", weights_only=False)["model"][k]) for k, v in avg["model"].items())
    average.main([str(epochs / "checkpoint3.pt")] * 2 + ["--output", str(tmp_path / "c.pt")])
    assert all(torch.allclose(v, three[k], atol=1e-7) for k, v in torch.load(tmp_path / "c.pt", weights_only=False)["model"].items())
    # the average decodes
    gen = run([tool("fairseq-generate"), tiny_data, "--user-dir", USER_DIR, "--path", tmp_path / "avg.pt",
               "--beam", "1", "--max-tokens", "500"]).stdout
    assert gen.count("\nH-") > 0


def test_average_takes_checkpoint_last_after_a_stop_inside_an_epoch(epochs, tiny_data, tmp_path):
    """A time budget (--stop-time-hours) or --max-update ends training inside an epoch: its final weights are only in
    checkpoint_last.pt, which then is the newest of the last N (the multi30k proof run's teacher lost its final
    epoch from its average before this)."""
    import shutil

    from fairseq_kd.cli import average

    save = tmp_path / "save"
    shutil.copytree(epochs, save)
    assert average.averaging_candidates(str(save))[-1].endswith("checkpoint3.pt")  # an epoch's end: last is epoch 3
    at_epoch3 = average.num_updates(str(save / "checkpoint3.pt"))
    options = [o for o in TINY_TRAIN if o != "--no-epoch-checkpoints"]
    run([tool("fairseq-train"), tiny_data, "--user-dir", USER_DIR, "--save-dir", save, "--max-epoch", "10", *options,
         "--arch", "kd_transformer_e2d1_32", "--keep-last-epochs", "5", "--max-update", str(at_epoch3 + 2)])
    assert not (save / "checkpoint4.pt").exists() and average.num_updates(str(save / "checkpoint_last.pt")) == at_epoch3 + 2
    assert run([tool("fairseq-kd-average"), save, "--count"]).stdout.strip() == "4"
    out = run([tool("fairseq-kd-average"), save, "--last", "2", "--output", tmp_path / "avg.pt"]).stdout
    assert "the average of 2 checkpoints (checkpoint3.pt, checkpoint_last.pt)" in out
    three, last = (torch.load(save / f, weights_only=False)["model"] for f in ("checkpoint3.pt", "checkpoint_last.pt"))
    avg = torch.load(tmp_path / "avg.pt", weights_only=False)["model"]
    for k, v in avg.items():
        torch.testing.assert_close(v, (three[k].double() + last[k].double()).div(2).to(v.dtype), rtol=0, atol=1e-7)
    with pytest.raises(FairseqKDError, match="give --output"):
        average.main([str(save), "--last", "2"])


def test_average_refuses_bad_inputs(epochs, tiny_teacher, tmp_path):
    from fairseq_kd.cli import average
    from fairseq_kd.errors import FairseqKDError

    (tmp_path / "corrupt.pt").write_bytes(b"not a checkpoint")
    out = str(tmp_path / "a.pt")
    last, two, three = str(epochs), str(epochs / "checkpoint2.pt"), str(epochs / "checkpoint3.pt")
    cases = [
        ([last, "--last", "9", "--output", out], "has 3 epoch checkpoints (checkpoint<EPOCH>.pt, and checkpoint_last.pt when newer), --last 9 needs"),
        ([three, "--last", "2", "--output", out], "is not a directory"),
        ([last, "--last", "0", "--output", out], "--last must be at least 1"),
        ([three, "--output", out], "give at least two checkpoints"),
        ([three, str(tiny_teacher), "--output", out], "is not a checkpoint of the same model"),
        ([three, str(tmp_path / "missing.pt"), "--output", out], "checkpoint not found"),
        ([three, str(tmp_path / "corrupt.pt"), "--output", out], "could not be read"),
        ([two, three, "--output", str(tmp_path)], "is a directory, not a file"),
        ([two, three, "--output", three], "would overwrite one of its inputs"),
    ]
    for args, message in cases:
        with pytest.raises(FairseqKDError, match=re.escape(message)):
            average.main(args)
    assert not (tmp_path / "a.pt").exists()
    # an existing output is kept unless --force; the tool says so in one line
    (tmp_path / "exists.pt").write_text("keep me")
    proc = run([tool("fairseq-kd-average"), two, three, "--output", tmp_path / "exists.pt"], check=False)
    assert proc.returncode != 0 and "exists (--force replaces it)" in error_line(proc)
    assert (tmp_path / "exists.pt").read_text() == "keep me"
    average.main([two, three, "--output", str(tmp_path / "exists.pt"), "--force"])
    assert (tmp_path / "exists.pt").stat().st_size > 1000
    # a save directory whose checkpoint_last.pt is corrupt (a killed save): --count and --last name that file
    save = tmp_path / "save"
    save.mkdir()
    (save / "checkpoint2.pt").symlink_to(two)
    (save / "checkpoint_last.pt").write_bytes(b"half a checkpoint")
    for args in (["--count"], ["--last", "1", "--output", tmp_path / "b.pt"]):
        proc = run([tool("fairseq-kd-average"), save, *args], check=False)
        assert proc.returncode != 0 and re.fullmatch(
            re.escape(f"{save / 'checkpoint_last.pt'} could not be read as a fairseq checkpoint") + r" \(\w+\)",
            error_line(proc)), proc.stderr
    assert not (tmp_path / "b.pt").exists()


def test_int8_transformer_quantizes_its_feed_forward_layers_and_decodes(epochs, tiny_data, tiny_task, tmp_path):
    small = tmp_path / "int8.pt"
    run([tool("fairseq-kd-compress"), epochs / "checkpoint3.pt", "--int8", "--output", small])
    model, facts = compression.load_model(str(small), tiny_task)
    # its parameters counted as the checkpoint's are: the tied embedding and output projection once
    from fairseq import checkpoint_utils
    dense = checkpoint_utils.load_model_ensemble([str(epochs / "checkpoint3.pt")], task=tiny_task)[0][0]
    assert dense.decoder.embed_tokens.weight is dense.decoder.output_projection.weight
    assert facts["params_total"] == sum(p.numel() for p in dense.parameters())
    quantized = {n for n, m in model.named_modules() if "quantized" in type(m).__module__}
    assert facts["int8"] and "encoder.layers.0.fc1" in quantized and "decoder.layers.0.fc2" in quantized
    # fairseq's attention hands its projections' tensors to torch's fused kernel: they stay fp32 modules
    assert not any("attn" in n for n in quantized)
    assert isinstance(model.encoder.layers[0].self_attn.q_proj.bias, torch.Tensor)
    gen = run([tool("fairseq-generate"), tiny_data, "--user-dir", USER_DIR, "--path", small, "--beam", "2",
               "--max-tokens", "500"]).stdout
    assert gen.count("\nH-") > 0
