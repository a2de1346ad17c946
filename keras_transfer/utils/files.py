"""Writing a folder so that a reader never sees half of it and a failure keeps the old one."""

import os
import shutil
import tempfile


def replace_folder(write, path):
    """Calls `write(folder)` on a new folder beside `path`, then swaps it in as a whole.

    The result holds only what `write` wrote: nothing from a previous folder at `path`
    survives, and a failure (in `write` or in the swap) leaves that folder untouched. A
    symlink at `path` is replaced by the new folder; the folder it pointed to is left as is.
    """
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(path)}.tmp-")
    try:
        write(staging)
        if os.path.lexists(path):
            retired = f"{staging}.old"
            os.rename(path, retired)
            try:
                os.rename(staging, path)
            except OSError:
                os.rename(retired, path)
                raise
            if os.path.islink(retired):
                os.unlink(retired)
            else:
                shutil.rmtree(retired, ignore_errors=True)
        else:
            os.rename(staging, path)
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging, ignore_errors=True)
