"""File safety shared by everything fastseq writes or reads back.

``atomic_write``: the data goes to a temporary file in the target's folder, is flushed and
fsync'ed, then renamed over the target, so a reader (or a crash) sees the old file or the whole
new one, never a truncated one. ``load_arrays``: unpickles a params file allowing only what a
list of NumPy arrays needs, so a hostile file cannot run code.
"""

import contextlib
import os
import pickle
import tempfile


@contextlib.contextmanager
def atomic_write(path, mode="wb", **open_kwargs):
    """``with atomic_write(path, "w") as f: f.write(...)`` replaces path only if the block ends
    without an error; the file keeps the permissions of the one it replaces."""
    path = os.path.abspath(os.fspath(path))
    folder, name = os.path.split(path)
    try:
        permissions = os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        permissions = 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, permissions)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename durable where the platform allows
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class _ArrayUnpickler(pickle.Unpickler):
    _ALLOWED = {("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),
                ("numpy._core.numeric", "_frombuffer"), ("numpy.core.numeric", "_frombuffer"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not part of a list of NumPy arrays")
        return super().find_class(module, name)


def load_arrays(path):
    """The list of arrays pickled in ``path``; ValueError for anything else."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"params file {path!r} does not exist")
    try:
        with open(path, "rb") as f:
            arrays = _ArrayUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, MemoryError) as e:
        raise ValueError(f"{path!r} is not a readable params file (truncated, or not a pickle "
                         f"of a list of arrays): {e}") from None
    if not isinstance(arrays, (list, tuple)):
        raise ValueError(f"{path!r} holds a {type(arrays).__name__}, not a list of arrays")
    return list(arrays)
