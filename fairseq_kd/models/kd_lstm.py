"""`kd_lstm`: the stacked LSTM encoder-decoder of Kim & Rush (2016), following Luong et al. (2015).

Encoder: embeddings -> stacked (optionally bidirectional) LSTM.
Decoder: stacked LSTM initialised from the encoder's final states, global attention with the
"general" score and input feeding:

    score(h_t, h_s) = h_t^T W_a h_s                  a_t = softmax_s(score(h_t, h_s))  (padding masked)
    c_t = sum_s a_t(s) h_s                           h~_t = tanh(W_c [c_t ; h_t])
    p(y_t | y_<t, x) = softmax(W_o h~_t)             input feeding: LSTM input at t+1 = [emb(y_t) ; h~_t]

With `--no-input-feeding` the decoder LSTM runs over the whole target in one `nn.LSTM` call and the
attention for all steps is one batched matmul. Both modes share the same parameters (one `nn.LSTM`),
and both decode incrementally (the LSTM state and h~ are cached and reordered by beam search).
"""
from typing import Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from fairseq import utils
from fairseq.models import (
    FairseqEncoder,
    FairseqEncoderDecoderModel,
    FairseqIncrementalDecoder,
    register_model,
    register_model_architecture,
)

from ..errors import FairseqKDError

DEFAULT_MAX_POSITIONS = 1024


@register_model("kd_lstm")
class KDLSTMModel(FairseqEncoderDecoderModel):
    @staticmethod
    def add_args(parser):
        parser.add_argument("--encoder-embed-dim", type=int, metavar="N", help="source embedding size")
        parser.add_argument("--encoder-hidden-size", type=int, metavar="N",
                            help="encoder LSTM size per direction (default: --encoder-embed-dim)")
        parser.add_argument("--encoder-layers", type=int, metavar="N", help="encoder LSTM layers")
        parser.add_argument("--encoder-bidirectional", action="store_true",
                            help="bidirectional encoder (the two directions are concatenated)")
        parser.add_argument("--decoder-embed-dim", type=int, metavar="N",
                            help="target embedding size (default: --encoder-embed-dim)")
        parser.add_argument("--decoder-hidden-size", type=int, metavar="N",
                            help="decoder LSTM size (default: --encoder-hidden-size)")
        parser.add_argument("--decoder-layers", type=int, metavar="N",
                            help="decoder LSTM layers (default: --encoder-layers); the decoder starts from the "
                                 "encoder's final states when they match, from zeros otherwise")
        parser.add_argument("--decoder-out-embed-dim", type=int, metavar="N",
                            help="size of h~ projected before the output layer (default: --decoder-hidden-size; "
                                 "--decoder-embed-dim when the embeddings are tied, and it must equal it then)")
        parser.add_argument("--no-input-feeding", action="store_true",
                            help="do not feed h~_{t-1} into the decoder LSTM (one fused LSTM call per target)")
        parser.add_argument("--share-decoder-input-output-embed", action="store_true",
                            help="tie the decoder input embedding and the output projection")
        parser.add_argument("--dropout", type=float, metavar="D", help="dropout on embeddings, between layers, on h~")
        parser.add_argument("--max-source-positions", type=int, metavar="N",
                            help=f"longest source accepted, in tokens (default {DEFAULT_MAX_POSITIONS})")
        parser.add_argument("--max-target-positions", type=int, metavar="N",
                            help=f"longest target accepted, in tokens (default {DEFAULT_MAX_POSITIONS})")

    @classmethod
    def build_model(cls, args, task):
        kd_lstm_base(args)
        check_options(args)
        encoder = KDLSTMEncoder(
            task.source_dictionary,
            embed_dim=args.encoder_embed_dim,
            hidden_size=args.encoder_hidden_size,
            num_layers=args.encoder_layers,
            bidirectional=args.encoder_bidirectional,
            dropout=args.dropout,
            max_positions=args.max_source_positions,
        )
        decoder = KDLSTMDecoder(
            task.target_dictionary,
            embed_dim=args.decoder_embed_dim,
            hidden_size=args.decoder_hidden_size,
            num_layers=args.decoder_layers,
            encoder_output_units=encoder.output_units,
            encoder_layers=args.encoder_layers,
            out_embed_dim=args.decoder_out_embed_dim,
            input_feeding=not args.no_input_feeding,
            share_input_output_embed=args.share_decoder_input_output_embed,
            dropout=args.dropout,
            max_positions=args.max_target_positions,
        )
        return cls(encoder, decoder)


def check_options(args):
    """Options that contradict each other are refused, as fairseq's lstm refuses them, never overridden."""
    if args.share_decoder_input_output_embed and args.decoder_out_embed_dim != args.decoder_embed_dim:
        raise FairseqKDError(f"--share-decoder-input-output-embed ties the output layer to the decoder embeddings: "
                             f"--decoder-out-embed-dim ({args.decoder_out_embed_dim}) must equal --decoder-embed-dim "
                             f"({args.decoder_embed_dim})")
    for name in ("encoder_embed_dim", "encoder_hidden_size", "encoder_layers", "decoder_embed_dim",
                 "decoder_hidden_size", "decoder_layers", "decoder_out_embed_dim"):
        if getattr(args, name) < 1:
            raise FairseqKDError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not 0.0 <= args.dropout < 1.0:
        raise FairseqKDError(f"--dropout must be in [0, 1), got {args.dropout}")


def embedding(num_embeddings, embedding_dim, padding_idx):
    m = nn.Embedding(num_embeddings, embedding_dim, padding_idx=padding_idx)
    nn.init.uniform_(m.weight, -0.1, 0.1)
    nn.init.constant_(m.weight[padding_idx], 0)
    return m


def uniform_init_(module: nn.Module, scale: float = 0.1):
    """Kim & Rush / Luong: every parameter uniform in [-0.1, 0.1]."""
    for p in module.parameters():
        nn.init.uniform_(p, -scale, scale)
    return module


class KDLSTMEncoder(FairseqEncoder):
    def __init__(self, dictionary, embed_dim, hidden_size, num_layers, bidirectional, dropout, max_positions):
        super().__init__(dictionary)
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.hidden_size = hidden_size
        self.output_units = hidden_size * (2 if bidirectional else 1)
        self.max_source_positions = max_positions
        self.padding_idx = dictionary.pad()
        self.embed_tokens = embedding(len(dictionary), embed_dim, self.padding_idx)
        self.dropout = nn.Dropout(dropout)
        self.lstm = uniform_init_(nn.LSTM(embed_dim, hidden_size, num_layers=num_layers,
                                          dropout=dropout if num_layers > 1 else 0.0,
                                          bidirectional=bidirectional))

    def forward(self, src_tokens: Tensor, src_lengths: Tensor, **unused):
        bsz, seqlen = src_tokens.size()
        # fairseq left-pads sources by default; packing needs right padding. The outputs are put back in
        # the caller's layout so that attention (and --print-alignment) index the given src_tokens.
        right = utils.convert_padding_direction(src_tokens, self.padding_idx, left_to_right=True)
        x = self.dropout(self.embed_tokens(right)).transpose(0, 1)  # T x B x C
        packed = nn.utils.rnn.pack_padded_sequence(x, src_lengths.cpu(), enforce_sorted=False)
        packed_out, (h, c) = self.lstm(packed)
        x, _ = nn.utils.rnn.pad_packed_sequence(packed_out, total_length=seqlen)
        if right is not src_tokens:  # was left-padded: shift each sentence back to the right
            shift = (seqlen - src_lengths).to(x.device)
            index = (torch.arange(seqlen, device=x.device).unsqueeze(0) - shift.unsqueeze(1)).remainder(seqlen)
            x = x.gather(0, index.t().unsqueeze(-1).expand(-1, -1, x.size(-1)))
        x = self.dropout(x)
        if self.bidirectional:  # (layers*2) x B x H -> layers x B x 2H
            h = h.view(self.num_layers, 2, bsz, -1).transpose(1, 2).reshape(self.num_layers, bsz, -1)
            c = c.view(self.num_layers, 2, bsz, -1).transpose(1, 2).reshape(self.num_layers, bsz, -1)
        return {
            "encoder_out": [x],  # T x B x output_units
            "encoder_padding_mask": [src_tokens.eq(self.padding_idx)],  # B x T
            "final_hidden": [h],  # layers x B x output_units
            "final_cell": [c],
        }

    def reorder_encoder_out(self, encoder_out: Dict[str, List[Tensor]], new_order: Tensor):
        return {
            "encoder_out": [encoder_out["encoder_out"][0].index_select(1, new_order)],
            "encoder_padding_mask": [encoder_out["encoder_padding_mask"][0].index_select(0, new_order)],
            "final_hidden": [encoder_out["final_hidden"][0].index_select(1, new_order)],
            "final_cell": [encoder_out["final_cell"][0].index_select(1, new_order)],
        }

    def max_positions(self):
        return self.max_source_positions


class GlobalAttention(nn.Module):
    """Luong "general" attention: a = softmax(h_t W_a H_s^T); h~ = tanh(W_c [c; h_t]).

    Works on any number of decoder steps at once: query is B x T x D_dec.
    """

    def __init__(self, query_dim, source_dim, output_dim):
        super().__init__()
        self.score_proj = nn.Linear(query_dim, source_dim, bias=False)  # W_a
        self.output_proj = nn.Linear(source_dim + query_dim, output_dim, bias=False)  # W_c

    def forward(self, query: Tensor, source: Tensor, source_padding_mask: Tensor):
        # query: B x T x Dq, source: B x S x Ds, source_padding_mask: B x S
        scores = torch.bmm(self.score_proj(query), source.transpose(1, 2))  # B x T x S
        scores = scores.float().masked_fill(source_padding_mask.unsqueeze(1), float("-inf"))
        attn = F.softmax(scores, dim=-1).type_as(query)
        context = torch.bmm(attn, source)  # B x T x Ds
        out = torch.tanh(self.output_proj(torch.cat((context, query), dim=-1)))
        return out, attn


class KDLSTMDecoder(FairseqIncrementalDecoder):
    def __init__(self, dictionary, embed_dim, hidden_size, num_layers, encoder_output_units, encoder_layers,
                 out_embed_dim, input_feeding, share_input_output_embed, dropout, max_positions):
        super().__init__(dictionary)
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.input_feeding = input_feeding
        self.max_target_positions = max_positions
        self.embed_tokens = embedding(len(dictionary), embed_dim, dictionary.pad())
        self.dropout = nn.Dropout(dropout)
        lstm_input = embed_dim + (hidden_size if input_feeding else 0)
        self.lstm = uniform_init_(nn.LSTM(lstm_input, hidden_size, num_layers=num_layers,
                                          dropout=dropout if num_layers > 1 else 0.0))
        # The decoder starts from the encoder's final states when the stacks line up (Kim & Rush);
        # a linear bridge maps them when the encoder is bidirectional or of another width.
        self.init_from_encoder = encoder_layers == num_layers
        self.bridge = (nn.Linear(encoder_output_units, hidden_size)
                       if self.init_from_encoder and encoder_output_units != hidden_size else None)
        self.attention = GlobalAttention(hidden_size, encoder_output_units, hidden_size)
        self.out_proj = nn.Linear(hidden_size, out_embed_dim, bias=False) if out_embed_dim != hidden_size else None
        self.output_projection = nn.Linear(out_embed_dim, len(dictionary), bias=False)
        if share_input_output_embed:
            self.output_projection.weight = self.embed_tokens.weight
        else:
            nn.init.uniform_(self.output_projection.weight, -0.1, 0.1)

    def initial_state(self, encoder_out: Dict[str, List[Tensor]], bsz: int, like: Tensor):
        if self.init_from_encoder:
            h, c = encoder_out["final_hidden"][0], encoder_out["final_cell"][0]
            if self.bridge is not None:
                h, c = torch.tanh(self.bridge(h)), torch.tanh(self.bridge(c))
            return h.contiguous(), c.contiguous()
        zeros = like.new_zeros(self.num_layers, bsz, self.hidden_size)
        return zeros, zeros

    def forward(self, prev_output_tokens, encoder_out: Optional[Dict[str, List[Tensor]]] = None,
                incremental_state: Optional[Dict[str, Dict[str, Optional[Tensor]]]] = None, **unused):
        x, attn = self.extract_features(prev_output_tokens, encoder_out, incremental_state)
        return self.output_layer(x), {"attn": [attn]}

    def extract_features(self, prev_output_tokens, encoder_out, incremental_state=None, **unused):
        if incremental_state is not None:
            prev_output_tokens = prev_output_tokens[:, -1:]
        bsz, seqlen = prev_output_tokens.size()
        source = encoder_out["encoder_out"][0].transpose(0, 1)  # B x S x C
        source_mask = encoder_out["encoder_padding_mask"][0]

        x = self.dropout(self.embed_tokens(prev_output_tokens)).transpose(0, 1)  # T x B x E
        cached = self.get_incremental_state(incremental_state, "cached_state") if incremental_state is not None else None
        if cached is not None:
            state = (cached["h"], cached["c"])
            input_feed = cached["input_feed"]
        else:
            state = self.initial_state(encoder_out, bsz, x)
            input_feed = x.new_zeros(bsz, self.hidden_size) if self.input_feeding else None

        if self.input_feeding:
            outs, attns = [], []
            for t in range(seqlen):
                step_in = torch.cat((x[t], input_feed), dim=-1).unsqueeze(0)
                h_top, state = self.lstm(step_in, state)
                h_tilde, a = self.attention(h_top.transpose(0, 1), source, source_mask)
                input_feed = self.dropout(h_tilde.squeeze(1))
                outs.append(input_feed)
                attns.append(a)
            out = torch.stack(outs, dim=1)  # B x T x H
            attn = torch.cat(attns, dim=1)  # B x T x S
        else:
            h_all, state = self.lstm(x, state)
            h_tilde, attn = self.attention(h_all.transpose(0, 1), source, source_mask)
            out = self.dropout(h_tilde)

        if incremental_state is not None:
            self.set_incremental_state(incremental_state, "cached_state",
                                       {"h": state[0], "c": state[1], "input_feed": input_feed})
        if self.out_proj is not None:
            out = self.out_proj(out)
        return out, attn

    def output_layer(self, features):
        return self.output_projection(features)

    def reorder_incremental_state(self, incremental_state, new_order: Tensor):
        cached = self.get_incremental_state(incremental_state, "cached_state")
        if cached is None:
            return
        feed = cached["input_feed"]
        self.set_incremental_state(incremental_state, "cached_state", {
            "h": cached["h"].index_select(1, new_order),
            "c": cached["c"].index_select(1, new_order),
            "input_feed": feed.index_select(0, new_order) if feed is not None else None,
        })

    def max_positions(self):
        return self.max_target_positions

    def get_normalized_probs(self, net_output, log_probs, sample=None):
        logits = net_output[0].float()
        return utils.log_softmax(logits, dim=-1) if log_probs else utils.softmax(logits, dim=-1)


# ---- named architectures: sizes are data ------------------------------------------------------

@register_model_architecture("kd_lstm", "kd_lstm")
def kd_lstm_base(args):
    args.encoder_embed_dim = getattr(args, "encoder_embed_dim", 500)
    args.encoder_hidden_size = getattr(args, "encoder_hidden_size", args.encoder_embed_dim)
    args.encoder_layers = getattr(args, "encoder_layers", 2)
    args.encoder_bidirectional = getattr(args, "encoder_bidirectional", False)
    args.decoder_embed_dim = getattr(args, "decoder_embed_dim", args.encoder_embed_dim)
    args.decoder_hidden_size = getattr(args, "decoder_hidden_size", args.encoder_hidden_size)
    args.decoder_layers = getattr(args, "decoder_layers", args.encoder_layers)
    args.no_input_feeding = getattr(args, "no_input_feeding", False)
    args.share_decoder_input_output_embed = getattr(args, "share_decoder_input_output_embed", False)
    args.decoder_out_embed_dim = getattr(args, "decoder_out_embed_dim", args.decoder_embed_dim
                                         if args.share_decoder_input_output_embed else args.decoder_hidden_size)
    args.dropout = getattr(args, "dropout", 0.3)
    args.max_source_positions = getattr(args, "max_source_positions", DEFAULT_MAX_POSITIONS)
    args.max_target_positions = getattr(args, "max_target_positions", DEFAULT_MAX_POSITIONS)


def _sized(layers: int, dim: int, dropout: float):
    def arch(args):
        args.encoder_layers = getattr(args, "encoder_layers", layers)
        args.encoder_embed_dim = getattr(args, "encoder_embed_dim", dim)
        args.dropout = getattr(args, "dropout", dropout)
        kd_lstm_base(args)
    return arch


# Kim & Rush 2016: WMT teacher 4x1000 and students 2x500 / 2x300; IWSLT Th-En teacher 2x500, student 2x100.
# Small CPU sizes for the demo and tests.
for _name, _layers, _dim, _dropout in [
    ("kd_lstm_4x1000", 4, 1000, 0.3),
    ("kd_lstm_2x500", 2, 500, 0.3),
    ("kd_lstm_2x300", 2, 300, 0.3),
    ("kd_lstm_2x100", 2, 100, 0.3),
    ("kd_lstm_2x256", 2, 256, 0.2),
    ("kd_lstm_1x128", 1, 128, 0.1),
    ("kd_lstm_1x32", 1, 32, 0.0),
]:
    register_model_architecture("kd_lstm", _name)(_sized(_layers, _dim, _dropout))
