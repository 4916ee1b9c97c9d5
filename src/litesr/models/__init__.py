"""Architectures. Importing this package registers every model module with the registry."""

from . import elan  # noqa: F401  (registers on import)
from . import esrt  # noqa: F401
from . import swinir  # noqa: F401
from . import grformer  # noqa: F401
from . import hitsrf  # noqa: F401
from . import imdn, pan  # noqa: F401
from . import span  # noqa: F401
from .registry import ARCHITECTURES, VARIANTS, Architecture, CheckpointError, Variant

__all__ = ["ARCHITECTURES", "VARIANTS", "Architecture", "CheckpointError", "Variant"]
