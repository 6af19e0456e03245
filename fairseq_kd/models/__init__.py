from . import kd_lstm  # noqa: F401
