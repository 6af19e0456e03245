"""The kd_lstm decoder as one lean step, for serving/search.py.

The encoder runs once per batch, through the model's own encoder. Each step is then the embedding lookup,
[emb; h~_{t-1}] into the stacked LSTM, Luong attention as two batched matrix products, h~ = tanh(W_c [c; h])
and the output projection, over every row of the batch (x beam) at once. There are no incremental-state
dictionaries; the encoder output is laid out for the two products once per batch, and re-indexed only when
sentences leave it (the beams of one sentence share their source, so fairseq's reordering of it at every step
changes nothing).

Float models run each LSTM layer as torch's fused `lstm_cell` and each linear layer as a FloatLinear on its
weights (F.linear, or for one row a product with the weight transposed once): a one-step `nn.LSTM` call goes
through oneDNN's RNN primitive, which costs several times the arithmetic at these sizes. The sums are the same up
to float rounding (about 1e-7), so outputs are compared with fairseq's on whole test sets (tests/test_serving.py,
benchmarks/serving_speed.py). int8 files (fairseq-kd-compress --int8: torch's dynamically quantized LSTM and Linear
modules) run those modules, the int8 kernels fairseq runs too.
"""
from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..errors import FairseqKDError


def is_kd_lstm(model) -> bool:
    from ..models.kd_lstm import KDLSTMModel

    return isinstance(model, KDLSTMModel)


class FloatLinear:
    """A float nn.Linear as a plain function of its weights. One row (batch 1, greedy) is a product with the weight
    transposed once, which runs about twice as fast here as F.linear's matrix-vector path on the output layer's
    shape (56 against 106 us for 128 x 6008); more rows go through F.linear, whose matrix-matrix path is as fast
    as the others tried (the transposed product, MKL's packed weights, a oneDNN linear: within this machine's
    noise inside the decoder). The one-row product differs from F.linear by float rounding only (about 1e-6)."""

    def __init__(self, module: nn.Linear):
        self.weight, self.bias = module.weight.detach(), None if module.bias is None else module.bias.detach()
        self.weight_t = self.weight.t().contiguous()

    def __call__(self, x: Tensor) -> Tensor:  # x: rows x in_features
        if x.size(0) == 1:
            return torch.mm(x, self.weight_t) if self.bias is None else torch.addmm(self.bias, x, self.weight_t)
        return F.linear(x, self.weight, self.bias)


def linear_of(module):
    """A float nn.Linear as a FloatLinear (no module call); any other module (int8) as itself."""
    if module is None:
        return None
    if type(module) is nn.Linear:
        return FloatLinear(module)
    return module


class LSTMState:
    __slots__ = ("keys", "values", "mask", "h", "c", "feed")

    def __init__(self, keys, values, mask, h, c, feed):
        self.keys, self.values, self.mask, self.h, self.c, self.feed = keys, values, mask, h, c, feed


class LSTMStep:
    """start / logits / reorder over a kd_lstm model (eval mode, CPU)."""

    def __init__(self, model):
        if not is_kd_lstm(model):
            raise FairseqKDError(f"the fast decoder runs kd_lstm models; this is a {type(model).__name__}")
        model.eval()
        self.model = model
        dec = model.decoder
        self.embed = dec.embed_tokens.weight
        self.padding_idx = dec.embed_tokens.padding_idx
        self.input_feeding = dec.input_feeding
        self.hidden_size = dec.hidden_size
        self.num_layers = dec.num_layers
        if type(dec.lstm) is nn.LSTM:  # float: one fused cell per layer
            self.cells = [tuple(getattr(dec.lstm, f"{w}_l{i}") for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
                          for i in range(dec.num_layers)]
            self.lstm = None
        else:  # int8: torch's quantized LSTM module
            self.cells, self.lstm = None, dec.lstm
        self.score_proj = linear_of(dec.attention.score_proj)
        self.output_proj = linear_of(dec.attention.output_proj)
        self.out_proj = linear_of(dec.out_proj)
        self.output_projection = linear_of(dec.output_projection)

    def max_positions(self) -> int:
        return self.model.max_decoder_positions()

    def start(self, src_tokens: Tensor, src_lengths: Tensor, rows_per_sentence: int) -> LSTMState:
        enc = self.model.encoder(src_tokens, src_lengths)
        if rows_per_sentence > 1:
            order = torch.arange(src_tokens.size(0)).repeat_interleave(rows_per_sentence)
            enc = self.model.encoder.reorder_encoder_out(enc, order)
        source = enc["encoder_out"][0]  # S x N x C
        n = source.size(1)
        h, c = self.model.decoder.initial_state(enc, n, source)
        feed = source.new_zeros(n, self.hidden_size) if self.input_feeding else None
        keys, values, mask = self._layout(source, enc["encoder_padding_mask"][0])
        return LSTMState(keys, values, mask, list(h.unbind(0)), list(c.unbind(0)), feed)

    @staticmethod
    def _layout(source: Tensor, padding_mask: Tensor):
        """The encoder output as the attention's two products read it: N x C x S and N x S x C, and the padding
        as an additive N x 1 x S mask (0 or -inf)."""
        values = source.transpose(0, 1).contiguous()
        keys = values.transpose(1, 2).contiguous()
        mask = torch.zeros(padding_mask.shape, dtype=values.dtype).masked_fill_(padding_mask, float("-inf"))
        return keys, values, mask.unsqueeze(1)

    def logits(self, prev: Tensor, st: LSTMState) -> Tensor:
        x = F.embedding(prev, self.embed, self.padding_idx)  # N x E
        if st.feed is not None:
            x = torch.cat((x, st.feed), dim=-1)
        if self.cells is not None:
            for i, cell in enumerate(self.cells):
                st.h[i], st.c[i] = torch.lstm_cell(x, (st.h[i], st.c[i]), *cell)
                x = st.h[i]
        else:
            out, (h, c) = self.lstm(x.unsqueeze(0), (torch.stack(st.h), torch.stack(st.c)))
            st.h, st.c = list(h.unbind(0)), list(c.unbind(0))
            x = out[0]
        query = x  # N x H
        scores = torch.baddbmm(st.mask, self.score_proj(query).unsqueeze(1), st.keys)  # N x 1 x S
        context = torch.bmm(torch.softmax(scores, dim=-1), st.values).squeeze(1)  # N x C
        h_tilde = torch.tanh(self.output_proj(torch.cat((context, query), dim=-1)))  # N x H
        if st.feed is not None:
            st.feed = h_tilde
        out = self.out_proj(h_tilde) if self.out_proj is not None else h_tilde
        return self.output_projection(out).float()

    def reorder(self, st: LSTMState, rows: Tensor, sentences_left: bool = True):
        """Keep `rows` (N' indices); the source only when sentences left the batch (beams share theirs)."""
        if sentences_left:
            st.keys = st.keys.index_select(0, rows)
            st.values = st.values.index_select(0, rows)
            st.mask = st.mask.index_select(0, rows)
        st.h = [h.index_select(0, rows) for h in st.h]
        st.c = [c.index_select(0, rows) for c in st.c]
        if st.feed is not None:
            st.feed = st.feed.index_select(0, rows)


class FastGenerator:
    """A drop-in for fairseq's SequenceGenerator over one kd_lstm model: `generate(models, sample)` and
    task.inference_step(generator, models, sample) return fairseq's hypothesis lists."""

    def __init__(self, model, tgt_dict, opts, nbest: int = 1):
        """opts: a search.SearchOptions. As fairseq's, every finished hypothesis of a beam is returned, best first
        (the caller keeps its n-best)."""
        self.step_model = LSTMStep(model)
        self.opts = opts
        self.pad, self.eos, self.unk = tgt_dict.pad(), tgt_dict.eos(), tgt_dict.unk()

    @torch.no_grad()
    def generate(self, models, sample, **kwargs) -> List[List[dict]]:
        from .search import generate

        if kwargs.get("prefix_tokens") is not None or kwargs.get("constraints") is not None:
            raise FairseqKDError("the fast decoder does not take prefix tokens or constraints")
        net = sample["net_input"]
        return generate(self.step_model, net["src_tokens"], net["src_lengths"], self.opts, self.pad, self.eos,
                        self.unk, self.step_model.max_positions())
