"""Named sizes of fairseq's `transformer` for teachers and students: `kd_transformer_e<E>d<D>_<dim>`.

They are architectures of fairseq's own `transformer` model (nothing of the model changes), so every fairseq tool
and CTranslate2's FairseqConverter (`fairseq-kd-export`) take them as they take `--arch transformer`: relu, the same
head count in encoder and decoder, the decoder's output layer tied to its input embeddings. The teachers are
post-norm (fairseq's default); the deep-encoder students are pre-norm (`--encoder-normalize-before
--decoder-normalize-before`): a 6-layer post-norm encoder at lr 3e-3 barely learns in the multi30k recipe's 9
minutes (valid loss 5.75 after 643 updates, pre-norm 4.85; docs/experiments/2026-12-02-first-proof-run.md).
Add `--share-all-embeddings` when the dictionary is joined (the recipes do); any size can be changed on the
command line as for any fairseq architecture (`--decoder-layers 2`).

The students have a deep encoder and a shallow decoder (Kasai et al. 2021, "Deep Encoder, Shallow Decoder"): the
encoder runs once per sentence, the decoder once per generated token, so decoding time follows the decoder's
depth. Sizes (params with a joined 6k vocabulary and shared embeddings, the multi30k recipe's setting):

    kd_transformer_e3d3_256   3+3 layers, 256 dims, ffn 1024, 4 heads: a CPU teacher (7.1M)
    kd_transformer_e6d6_256   6+6 layers, 256 dims, ffn 1024, 4 heads: a bigger teacher (12.6M)
    kd_transformer_e6d2_256   6+2 layers, 256 dims, ffn 1024, 4 heads (8.4M)
    kd_transformer_e6d1_256   6+1 layers, 256 dims, ffn 1024, 4 heads (7.3M)
    kd_transformer_e6d2_128   6+2 layers, 128 dims, ffn 512, 4 heads (2.5M)
    kd_transformer_e6d1_128   6+1 layers, 128 dims, ffn 512, 4 heads (2.2M)
    kd_transformer_e4d4_128   4+4 layers, 128 dims, ffn 512, 4 heads: the demo's teacher, minutes on CPU (2.6M)
    kd_transformer_e6d1_64    6+1 layers, 64 dims, ffn 256, 4 heads: the demo's student (0.75M)
    kd_transformer_e2d2_64    2+2 layers, 64 dims, ffn 128, 2 heads: a teacher for smoke tests (0.55M)
    kd_transformer_e2d1_32    2+1 layers, 32 dims, ffn 64, 2 heads: a student for smoke tests (0.2M)
"""
from fairseq.models import register_model_architecture
from fairseq.models.transformer.transformer_legacy import base_architecture


def _sized(encoder_layers: int, decoder_layers: int, dim: int, ffn: int, heads: int, dropout: float, pre_norm: bool):
    def arch(args):
        args.encoder_layers = getattr(args, "encoder_layers", encoder_layers)
        args.decoder_layers = getattr(args, "decoder_layers", decoder_layers)
        args.encoder_embed_dim = getattr(args, "encoder_embed_dim", dim)
        args.decoder_embed_dim = getattr(args, "decoder_embed_dim", args.encoder_embed_dim)
        args.encoder_ffn_embed_dim = getattr(args, "encoder_ffn_embed_dim", ffn)
        args.decoder_ffn_embed_dim = getattr(args, "decoder_ffn_embed_dim", args.encoder_ffn_embed_dim)
        args.encoder_attention_heads = getattr(args, "encoder_attention_heads", heads)
        args.decoder_attention_heads = getattr(args, "decoder_attention_heads", args.encoder_attention_heads)
        args.dropout = getattr(args, "dropout", dropout)
        args.encoder_normalize_before = getattr(args, "encoder_normalize_before", pre_norm)
        args.decoder_normalize_before = getattr(args, "decoder_normalize_before", pre_norm)
        args.share_decoder_input_output_embed = getattr(args, "share_decoder_input_output_embed", True)
        base_architecture(args)
    return arch


for _name, _enc, _dec, _dim, _ffn, _heads, _dropout, _pre_norm in [
    ("kd_transformer_e3d3_256", 3, 3, 256, 1024, 4, 0.3, False),
    ("kd_transformer_e6d6_256", 6, 6, 256, 1024, 4, 0.3, False),
    ("kd_transformer_e6d2_256", 6, 2, 256, 1024, 4, 0.3, True),
    ("kd_transformer_e6d1_256", 6, 1, 256, 1024, 4, 0.3, True),
    ("kd_transformer_e6d2_128", 6, 2, 128, 512, 4, 0.1, True),
    ("kd_transformer_e6d1_128", 6, 1, 128, 512, 4, 0.1, True),
    ("kd_transformer_e4d4_128", 4, 4, 128, 512, 4, 0.1, False),
    ("kd_transformer_e6d1_64", 6, 1, 64, 256, 4, 0.1, True),
    ("kd_transformer_e2d2_64", 2, 2, 64, 128, 2, 0.0, False),
    ("kd_transformer_e2d1_32", 2, 1, 32, 64, 2, 0.0, True),  # pre-norm as the students it stands in for
]:
    register_model_architecture("transformer", _name)(_sized(_enc, _dec, _dim, _ffn, _heads, _dropout, _pre_norm))
