"""How litesr's models compute, apart from what they compute: window layout, window attention, fused convolutions,
weights derived for inference, the kernels compiled on the user's machine (:mod:`litesr.ops.native`), and which
path each call takes. Nothing here imports :mod:`litesr.models`; the models import from here."""
