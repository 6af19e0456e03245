from . import translation_prune, translation_seq_inter  # noqa: F401
