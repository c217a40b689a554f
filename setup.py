"""Builds the optional compiled order book (``marketpipe._cbook``); everything else is in pyproject.toml.

The extension is optional: where no C compiler is available (a slim container image, a cross-platform
Lambda layer) installation still succeeds and ``marketpipe.book`` uses its pure-Python book, which
behaves identically, only slower.
"""

from Cython.Build import cythonize
from setuptools import Extension, setup

extensions = cythonize(
    [Extension("marketpipe._cbook", ["layers/marketpipe/_cbook.pyx"])],
    compiler_directives={"language_level": "3"},
    quiet=True,
)
for extension in extensions:
    extension.optional = True  # a failed compile is a warning, not a failed install

setup(ext_modules=extensions)
