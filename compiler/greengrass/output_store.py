"""Where packaged artifacts go: `s3://Bucket/Prefix/...`, embedded as one local folder per bucket."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Protocol

from compiler.settings import Settings


def object_key(prefix: str | None, *parts: str) -> str:
    """Join an S3 prefix ("models/" or "models" or "") and path parts into a key."""
    head = (prefix or "").rstrip("/")
    return "/".join([head, *parts]) if head else "/".join(parts)


def prefix_problem(prefix: str | None) -> str | None:
    """Why a key prefix cannot be used (a '.' or '..' segment, a leading '/': the local store would write
    outside the bucket's folder, and S3 consoles show such keys badly), or None."""
    if not prefix:
        return None
    if prefix.startswith("/"):
        return "must not start with '/'"
    if any(segment in (".", "..") for segment in prefix.split("/")):
        return "must not contain '.' or '..' path segments"
    return None


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def split_s3_uri(uri: str) -> tuple[str, str]:
    """s3://bucket/key → (bucket, key)."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


class OutputStore(Protocol):
    """The storage a packaging job writes to and `export-component` reads from."""

    def check_bucket(self, bucket: str) -> None: ...

    def put_file(self, bucket: str, key: str, source: Path) -> str: ...

    def get_file(self, bucket: str, key: str, destination: Path) -> Path: ...


class LocalFolderStore:
    """An S3 stand-in: `<root>/<bucket>/<key>`, written atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def check_bucket(self, bucket: str) -> None:
        """Every bucket name the API model accepts is a folder here."""

    def _path(self, bucket: str, key: str) -> Path:
        path = (self.root / bucket / key).resolve()
        if not path.is_relative_to((self.root / bucket).resolve()):
            raise ValueError(f"object key {key!r} escapes bucket {bucket!r}")
        return path

    def put_file(self, bucket: str, key: str, source: Path) -> str:
        target = self._path(bucket, key)
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp, source.open("rb") as src:
            shutil.copyfileobj(src, tmp)
        os.replace(tmp.name, target)
        return s3_uri(bucket, key)

    def get_file(self, bucket: str, key: str, destination: Path) -> Path:
        source = self._path(bucket, key)
        if not source.is_file():
            raise FileNotFoundError(f"{s3_uri(bucket, key)} is not in the output store ({source})")
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, destination)
        return destination


def open_output_store(settings: Settings) -> OutputStore:
    """The store `settings.output` names: the embedded folder store, or real S3 (compiler/greengrass/s3_store.py)."""
    if settings.output == "s3":
        from compiler.greengrass.s3_store import S3Store

        return S3Store(settings.region)
    return LocalFolderStore(settings.buckets_dir)
