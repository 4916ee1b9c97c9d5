"""Image and file I/O: tolerant readers with clear errors, atomic writers (no half-written outputs).

One module per job: :mod:`~litesr.io.read` decodes images, :mod:`~litesr.io.write` encodes them (PNG streamed
strip by strip), :mod:`~litesr.io.files` lists inputs and guards destinations (atomic writes, writability, name
lengths, a killed run's temporaries), :mod:`~litesr.io.pixels` converts pixels between arrays, tensors and PIL
images. Their public names are all here, as ``litesr.io.<name>``.
"""

from .files import (INPUT_SUFFIXES, IMAGE_SUFFIXES, TEMP_PREFIX, TEMP_SUFFIX, atomic_path, check_writable,
                    image_files, name_too_long, remove_stale_temporaries, write_error)
from .pixels import channels_last_batch, image_to_tensor, luma, tensor_to_image, to_bits, to_pil
from .read import (DEFAULT_MAX_PIXELS, ImageReadError, Picture, is_grayscale_file, picture_from_image,
                   picture_from_pil, read_image, read_picture, white_level)
from .write import (FORMATS, MAX_HELD_OUTPUT_BYTES, MAX_SIDE, PNG_ZLIB, check_output_size, keeps_16_bit, keeps_alpha,
                    output_format, write_image, write_strips)

__all__ = [
    "DEFAULT_MAX_PIXELS", "FORMATS", "IMAGE_SUFFIXES", "INPUT_SUFFIXES", "MAX_HELD_OUTPUT_BYTES", "MAX_SIDE",
    "PNG_ZLIB", "TEMP_PREFIX", "TEMP_SUFFIX", "ImageReadError", "Picture", "atomic_path", "check_output_size",
    "channels_last_batch", "check_writable", "image_files", "image_to_tensor", "is_grayscale_file", "keeps_16_bit",
    "keeps_alpha", "luma", "name_too_long", "output_format", "picture_from_image", "picture_from_pil", "read_image",
    "read_picture", "remove_stale_temporaries", "tensor_to_image", "to_bits", "to_pil", "white_level", "write_error",
    "write_image", "write_strips",
]
