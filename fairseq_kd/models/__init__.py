from . import kd_lstm  # noqa: F401
from . import kd_transformer  # noqa: F401
