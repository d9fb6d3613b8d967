"""A pickle reader that builds numpy arrays and plain containers, and nothing else.

detectron2's model-zoo files are pickles: `{"model": {name: ndarray}, "__author__": ...}`. A
pickle can name any importable callable and call it while loading, so the stock unpickler would
run whatever the file says. This one admits only the few callables that rebuild numpy arrays,
dtypes and scalars (plus `_codecs.encode`, which pickle protocol 2 uses to store the bytes of an
array, and `collections.OrderedDict`); dicts, lists, tuples, numbers and strings need no callable.
Any other global, and persistent ids, raise `CheckpointError` before anything is called.
"""

from __future__ import annotations

import pickle
from pathlib import Path

from ..errors import CheckpointError

_ALLOWED = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"), ("collections", "OrderedDict"),
}  # fmt: skip


class _Restricted(pickle.Unpickler):
    def __init__(self, file, source: str):
        super().__init__(file, encoding="latin1")  # detectron2's older files are Python 2 pickles
        self.source = source

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise CheckpointError(
                f"{self.source}: refused to load: the pickle asks for {module}.{name}, and only "
                "numpy arrays, dicts, lists, numbers and strings are read from pickles"
            )
        return super().find_class(module, name)

    def persistent_load(self, pid):
        raise CheckpointError(f"{self.source}: refused to load: the pickle uses persistent ids")


def load_numpy_pickle(path: str | Path):
    """The object in the pickle at `path`, built from numpy arrays and plain containers only."""
    try:
        with open(path, "rb") as f:
            return _Restricted(f, str(path)).load()
    except CheckpointError:
        raise
    except Exception as exc:  # truncated, corrupt or not a pickle at all
        raise CheckpointError(f"{path}: cannot read weights (truncated or not a pickle?): {exc}") from exc
