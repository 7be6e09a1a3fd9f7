"""Files every node of a sweep shares: a local directory, or an object store URI (s3://bucket/path,
gs://bucket/path) through pyarrow's filesystems, the ones Ray Tune's `storage_path` uses too.

Writes are atomic: locally a temporary file renamed into place; on an object store one upload,
which readers see whole or not at all. S3-compatible servers other than AWS (MinIO, ...) are
reached with `AWS_ENDPOINT_URL`, set on every node.
"""

import fnmatch
import json
import os
from pathlib import Path

from layerlth.foundations.atomic import write_atomic


def is_uri(location):
    return "://" in str(location)


STREAM_BUFFER = 8 << 20  # bytes an object-store stream fetches per request


class Storage:
    """A directory of the shared storage; names inside it are relative, '/'-separated."""

    def __init__(self, location):
        self.location = str(location).rstrip("/") if is_uri(location) else str(Path(location).resolve())
        self._fs = None

    @property
    def local(self):
        return not is_uri(self.location)

    def __getstate__(self):  # travels to Ray workers as its location; each opens its own client
        return {"location": self.location, "_fs": None}

    def __repr__(self):
        return f"Storage({self.location!r})"

    def __str__(self):
        return self.location

    def child(self, name):
        return Storage(self.path(name))

    def path(self, name=""):
        """The local path or URI of `name`."""
        if not name:
            return self.location
        return str(Path(self.location) / name) if self.local else f"{self.location}/{name}"

    def _remote(self, name=""):
        """(pyarrow filesystem, its path of `name`)."""
        import pyarrow.fs

        if self._fs is None:
            self._fs, self._base = pyarrow.fs.FileSystem.from_uri(self.location)
        return self._fs, f"{self._base}/{name}".rstrip("/")

    def exists(self, name):
        if self.local:
            return Path(self.path(name)).is_file()
        import pyarrow.fs

        fs, path = self._remote(name)
        return fs.get_file_info(path).type == pyarrow.fs.FileType.File

    def size(self, name):
        """The file's size in bytes, without reading it; FileNotFoundError naming it when it is not there."""
        if self.local:
            try:
                return os.stat(self.path(name)).st_size
            except FileNotFoundError as error:
                raise FileNotFoundError(f"{self.path(name)} does not exist") from error
        import pyarrow.fs

        fs, path = self._remote(name)
        info = fs.get_file_info(path)
        if info.type != pyarrow.fs.FileType.File:
            raise FileNotFoundError(f"{self.path(name)} does not exist")
        return info.size

    def read_bytes(self, name):
        """The file's bytes; FileNotFoundError naming it when it is not there."""
        if self.local:
            return Path(self.path(name)).read_bytes()
        fs, path = self._remote(name)
        try:
            with fs.open_input_stream(path) as stream:
                return stream.read()
        except FileNotFoundError as error:
            raise FileNotFoundError(f"{self.path(name)} does not exist") from error

    def open_stream(self, name):
        """A file object reading `name` from its start, streamed (an object store's bytes are not
        copied first); FileNotFoundError naming it when it is not there."""
        if self.local:
            return open(self.path(name), "rb")  # noqa: SIM115 - the caller closes it
        fs, path = self._remote(name)
        try:
            return fs.open_input_stream(path, buffer_size=STREAM_BUFFER)  # unbuffered, each small read is a request
        except FileNotFoundError as error:
            raise FileNotFoundError(f"{self.path(name)} does not exist") from error

    def write_bytes(self, name, data):
        if self.local:
            write_atomic(self.path(name), lambda handle: handle.write(data))
            return
        fs, path = self._remote(name)
        with fs.open_output_stream(path) as stream:  # the object appears when the upload completes
            stream.write(data)

    def read_json(self, name):
        return json.loads(self.read_bytes(name))

    def write_json(self, name, obj):
        self.write_bytes(name, json.dumps(obj, indent=2, default=str).encode())

    def move(self, name, new_name):
        """Rename a file: atomic locally; on an object store a server-side copy, then a delete."""
        if self.local:
            os.replace(self.path(name), self.path(new_name))
            return
        fs, path = self._remote(name)
        try:
            fs.move(path, self._remote(new_name)[1])
        except FileNotFoundError as error:
            raise FileNotFoundError(f"{self.path(name)} does not exist") from error

    def delete(self, name):
        if self.local:
            Path(self.path(name)).unlink(missing_ok=True)
            return
        fs, path = self._remote(name)
        if self.exists(name):
            fs.delete_file(path)

    def listing(self):
        """[(name, size)] of every file below, sorted by name: one listing call on an object store."""
        if self.local:
            root = Path(self.location)
            return sorted((p.relative_to(root).as_posix(), p.stat().st_size) for p in root.rglob("*") if p.is_file())
        import pyarrow.fs

        fs, base = self._remote()
        selector = pyarrow.fs.FileSelector(base, recursive=True, allow_not_found=False)
        return sorted((info.path[len(base) + 1:], info.size) for info in fs.get_file_info(selector)
                      if info.type == pyarrow.fs.FileType.File)

    def glob(self, pattern):
        """Sorted names of the files matching `pattern` ('*' stays within one folder)."""
        if self.local:
            root = Path(self.location)
            return sorted(p.relative_to(root).as_posix() for p in root.glob(pattern) if p.is_file())
        import pyarrow.fs

        prefix = pattern.split("*")[0].rsplit("/", 1)[0] if "/" in pattern.split("*")[0] else ""
        fs, path = self._remote(prefix)
        selector = pyarrow.fs.FileSelector(path, recursive=True, allow_not_found=True)
        _, base = self._remote()
        names = (info.path[len(base) + 1:] for info in fs.get_file_info(selector)
                 if info.type == pyarrow.fs.FileType.File)
        depth = pattern.count("/")
        return sorted(n for n in names if n.count("/") == depth and fnmatch.fnmatchcase(n, pattern))

    def local_dir(self, name=""):
        """A local directory for `name`: the storage's own when local, else one under the working
        directory (per node) for files that need a real filesystem (W&B offline runs)."""
        path = Path(self.path(name)) if self.local else Path("results") / "remote" / self.location.split("://", 1)[1] / name
        os.makedirs(path, exist_ok=True)
        return str(path)
