"""litesr: efficient transformer single-image super-resolution, faithful to the official code."""

__version__ = "0.2.0"

from .errors import LitesrError  # noqa: E402
from .checkpoint import create_model, load_model, read_state_dict, save_model  # noqa: E402
from .models import ARCHITECTURES, VARIANTS, CheckpointError  # noqa: E402
from .evaluate import evaluate  # noqa: E402
from .api import upscale  # noqa: E402

__all__ = [
    "__version__",
    "create_model",
    "load_model",
    "read_state_dict",
    "save_model",
    "evaluate",
    "upscale",
    "ARCHITECTURES",
    "VARIANTS",
    "CheckpointError",
    "LitesrError",
]
