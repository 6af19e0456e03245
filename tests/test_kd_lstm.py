"""kd_lstm: shapes, incremental decoding identical to the full forward, beam reordering, options."""
import pytest
import torch

from fairseq.models import ARCH_MODEL_REGISTRY

from helpers import batch, build_model

ARCHS = ["kd_lstm_4x1000", "kd_lstm_2x500", "kd_lstm_2x300", "kd_lstm_2x100", "kd_lstm_2x256", "kd_lstm_1x128"]


def test_paper_architectures_are_registered():
    for arch in ARCHS:
        assert arch in ARCH_MODEL_REGISTRY


def test_paper_sizes(tiny_task):
    model = build_model(tiny_task, arch="kd_lstm_2x500")
    assert model.encoder.lstm.num_layers == 2 and model.encoder.lstm.hidden_size == 500
    assert model.decoder.lstm.hidden_size == 500 and model.decoder.embed_tokens.embedding_dim == 500
    # input feeding: the decoder LSTM sees [embedding ; h~]
    assert model.decoder.lstm.input_size == 1000


def incremental_logits(model, sample):
    net_input = sample["net_input"]
    enc = model.encoder(net_input["src_tokens"], net_input["src_lengths"])
    state = {}
    prev = net_input["prev_output_tokens"]
    steps = []
    for t in range(prev.size(1)):
        out, _ = model.decoder(prev[:, : t + 1], encoder_out=enc, incremental_state=state)
        steps.append(out)
    return torch.cat(steps, dim=1)


@pytest.mark.parametrize("options", [
    {},
    {"no_input_feeding": True},
    {"encoder_bidirectional": True},
    {"share_decoder_input_output_embed": True},
    {"share_decoder_input_output_embed": True, "decoder_hidden_size": 48},  # h~ projected down to the embeddings
    {"encoder_layers": 2, "decoder_layers": 1},
])
def test_incremental_decoding_equals_full_forward(tiny_task, options):
    model = build_model(tiny_task, arch="kd_lstm_1x32", **options).eval()
    sample = batch(tiny_task)
    with torch.no_grad():
        full, extra = model(**sample["net_input"])
        step = incremental_logits(model, sample)
    assert full.shape == (sample["target"].size(0), sample["target"].size(1), len(tiny_task.target_dictionary))
    assert extra["attn"][0].shape[:2] == full.shape[:2]
    torch.testing.assert_close(step, full, rtol=1e-5, atol=1e-5)


def test_attention_ignores_source_padding(tiny_task):
    model = build_model(tiny_task).eval()
    sample = batch(tiny_task)
    with torch.no_grad():
        _, extra = model(**sample["net_input"])
    attn = extra["attn"][0]  # B x T x S
    pad_mask = sample["net_input"]["src_tokens"].eq(tiny_task.source_dictionary.pad())
    assert pad_mask.any()
    assert attn.masked_select(pad_mask.unsqueeze(1).expand_as(attn)).abs().max() == 0
    torch.testing.assert_close(attn.sum(-1), torch.ones_like(attn.sum(-1)))


def test_reorder_incremental_state_follows_beam(tiny_task):
    model = build_model(tiny_task).eval()
    sample = batch(tiny_task, n=4)
    net_input = sample["net_input"]
    prev = net_input["prev_output_tokens"][:, :3]
    order = torch.tensor([3, 1, 0, 2])
    with torch.no_grad():
        enc = model.encoder(net_input["src_tokens"], net_input["src_lengths"])
        state = {}
        model.decoder(prev[:, :1], encoder_out=enc, incremental_state=state)
        model.decoder.reorder_incremental_state_scripting(state, order)
        enc_r = model.encoder.reorder_encoder_out(enc, order)
        stepped, _ = model.decoder(prev[order, :2], encoder_out=enc_r, incremental_state=state)
        full, _ = model.decoder(prev[order, :2], encoder_out=enc_r)
    torch.testing.assert_close(stepped[:, -1], full[:, -1], rtol=1e-5, atol=1e-5)


def test_tied_embeddings_share_storage(tiny_task):
    model = build_model(tiny_task, share_decoder_input_output_embed=True)
    assert model.decoder.output_projection.weight is model.decoder.embed_tokens.weight


@pytest.mark.parametrize("options,message", [
    ({"share_decoder_input_output_embed": True, "decoder_out_embed_dim": 16},
     "--share-decoder-input-output-embed ties the output layer to the decoder embeddings: "
     "--decoder-out-embed-dim (16) must equal --decoder-embed-dim (32)"),
    ({"decoder_layers": 0}, "--decoder-layers must be >= 1, got 0"),
    ({"dropout": 1.0}, "--dropout must be in [0, 1), got 1.0"),
])
def test_conflicting_options_are_refused(tiny_task, options, message):
    from fairseq_kd.errors import FairseqKDError

    with pytest.raises(FairseqKDError) as error:
        build_model(tiny_task, **options)
    assert str(error.value) == message


def test_every_option_has_help():
    import argparse

    from fairseq_kd.models.kd_lstm import KDLSTMModel

    parser = argparse.ArgumentParser()
    KDLSTMModel.add_args(parser)
    options = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert len(options) == 13 and all(a.help for a in options), [a.dest for a in options if not a.help]
