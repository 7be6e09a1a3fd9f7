"""One small JSON object that drivers create, rewrite and delete only if it is still what they last
saw: a compare-and-swap on the sweep's storage, which `driver` builds its lease on.

On S3 (and servers that implement its conditional writes) the server decides: `IfNoneMatch="*"`
creates only if no object exists, `IfMatch=<etag>` rewrites only the version the driver read, so of
two drivers writing at once exactly one wins. Other stores (gs://, other pyarrow filesystems) get
a plain read-then-write: two drivers acting within the same moment can both win there.
"""

import json
import uuid
from urllib.parse import urlsplit

from layerlth.foundations.storage import Storage

# what S3 answers when a condition fails: 412, or 409 for a conditional write racing another
_LOST_RACE = {"PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "412", "409", "404"}


def lease_object(root, name):
    """The object `name` in the sweep's storage `root` (a Storage on an object store)."""
    return S3Object(root.path(name)) if root.location.startswith("s3://") else PlainObject(root, name)


def _boto3():
    try:
        import boto3
    except ImportError as error:  # a declared dependency; missing only from a partial install
        raise ImportError("the driver lease on s3:// needs boto3 (pip install 'boto3>=1.35.69')") from error
    return boto3


class S3Object:
    """The object at an s3:// URI, written with S3's conditional writes. boto3 reads the endpoint
    (AWS_ENDPOINT_URL), region and credentials from the environment, as pyarrow does."""

    def __init__(self, uri):
        parts = urlsplit(uri)
        self.uri, self.bucket, self.key = uri, parts.netloc, parts.path.lstrip("/")
        self.client = _boto3().client("s3")

    def read(self):
        """(the object's JSON or {} when unreadable, its tag); (None, None) when there is none."""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except self.client.exceptions.NoSuchKey:
            return None, None
        return _parse(response["Body"].read()), response["ETag"]

    def create(self, obj):
        """Write `obj` if no object exists: its tag, or None when another driver's is there."""
        return self._put(obj, IfNoneMatch="*")

    def replace(self, obj, tag):
        """Write `obj` over the version tagged `tag`: the new tag, or None when it has changed or gone."""
        return self._put(obj, IfMatch=tag)

    def delete(self, tag):
        """Delete the object if it is still the version tagged `tag`."""
        if self.read()[1] == tag:
            self.client.delete_object(Bucket=self.bucket, Key=self.key)

    def _put(self, obj, **condition):
        from botocore.exceptions import ClientError

        try:
            return self.client.put_object(Bucket=self.bucket, Key=self.key, Body=_dump(obj), **condition)["ETag"]
        except ClientError as error:
            if str(error.response.get("Error", {}).get("Code")) in _LOST_RACE:
                return None
            raise


class PlainObject:
    """A file of a Storage without conditional writes: each version carries a random token, its tag,
    and a write checks the token first, which narrows the race but cannot close it."""

    def __init__(self, root: Storage, name):
        self.root, self.name, self.uri = root, name, root.path(name)

    def read(self):
        if not self.root.exists(self.name):
            return None, None
        try:
            obj = _parse(self.root.read_bytes(self.name))
        except FileNotFoundError:
            return None, None
        return obj, obj.get("token")

    def create(self, obj):
        return None if self.root.exists(self.name) else self._write(obj)

    def replace(self, obj, tag):
        return self._write(obj) if self.read()[1] == tag else None

    def delete(self, tag):
        if self.read()[1] == tag:
            self.root.delete(self.name)

    def _write(self, obj):
        token = uuid.uuid4().hex
        self.root.write_bytes(self.name, _dump({**obj, "token": token}))
        return token if self.read()[1] == token else None  # another driver wrote last


def _dump(obj):
    return json.dumps(obj, indent=2).encode()


def _parse(data):
    try:
        obj = json.loads(data)
    except ValueError:
        return {}
    return obj if isinstance(obj, dict) else {}
