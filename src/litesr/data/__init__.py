"""Data: ``imresize`` (the MATLAB-compatible bicubic every SR benchmark was made with), ``testsets`` (EDSR-layout
test sets) and ``training`` (patch datasets). Import from the submodules, e.g.
``from litesr.data.imresize import imresize, modcrop``.
"""
