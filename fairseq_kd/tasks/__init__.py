from . import translation_seq_inter  # noqa: F401
