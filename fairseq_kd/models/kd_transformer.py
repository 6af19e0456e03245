"""Named sizes of fairseq's `transformer` for teachers and students: `kd_transformer_e<E>d<D>_<dim>`.

They are architectures of fairseq's own `transformer` model (nothing of the model changes), so every fairseq tool
and CTranslate2's FairseqConverter (`fairseq-kd-export`) take them as they take `--arch transformer`: post-norm,
relu, the same head count in encoder and decoder, the decoder's output layer tied to its input embeddings.
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
    kd_transformer_e2d2_64    2+2 layers, 64 dims, ffn 128, 2 heads: a teacher for smoke tests (0.55M)
    kd_transformer_e2d1_32    2+1 layers, 32 dims, ffn 64, 2 heads: a student for smoke tests (0.2M)
"""
from fairseq.models import register_model_architecture
from fairseq.models.transformer.transformer_legacy import base_architecture


def _sized(encoder_layers: int, decoder_layers: int, dim: int, ffn: int, heads: int, dropout: float):
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
        args.share_decoder_input_output_embed = getattr(args, "share_decoder_input_output_embed", True)
        base_architecture(args)
    return arch


for _name, _enc, _dec, _dim, _ffn, _heads, _dropout in [
    ("kd_transformer_e3d3_256", 3, 3, 256, 1024, 4, 0.3),
    ("kd_transformer_e6d6_256", 6, 6, 256, 1024, 4, 0.3),
    ("kd_transformer_e6d2_256", 6, 2, 256, 1024, 4, 0.3),
    ("kd_transformer_e6d1_256", 6, 1, 256, 1024, 4, 0.3),
    ("kd_transformer_e6d2_128", 6, 2, 128, 512, 4, 0.1),
    ("kd_transformer_e6d1_128", 6, 1, 128, 512, 4, 0.1),
    ("kd_transformer_e2d2_64", 2, 2, 64, 128, 2, 0.0),
    ("kd_transformer_e2d1_32", 2, 1, 32, 64, 2, 0.0),
]:
    register_model_architecture("transformer", _name)(_sized(_enc, _dec, _dim, _ffn, _heads, _dropout))
