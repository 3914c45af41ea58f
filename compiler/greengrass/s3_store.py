"""Packaged artifacts in real S3 (`LOOKOUT_EDGE_OUTPUT=s3`), with boto3 and the standard AWS configuration
(environment, ~/.aws/config and credentials; AWS_ENDPOINT_URL_S3 for an S3-compatible server). Uploads are
multipart above 16 MiB, each part's SHA-256 sent and checked by S3 on receipt; the stored size is read back. The
bucket must be in the service's region, as Lookout for Vision required."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compiler.api.errors import ValidationException
from compiler.greengrass.output_store import s3_uri

MULTIPART_BYTES = 16 << 20


class S3OutputError(RuntimeError):
    """S3 refused or lost an upload; the message says which object and why."""


class S3Store:
    """The OutputStore of real S3."""

    def __init__(self, region: str, client: Any = None) -> None:
        import boto3
        from boto3.s3.transfer import TransferConfig

        self.region = region
        self.client = client or boto3.client("s3", region_name=region)
        self.transfer = TransferConfig(multipart_threshold=MULTIPART_BYTES, multipart_chunksize=MULTIPART_BYTES)

    def check_bucket(self, bucket: str) -> None:
        """ValidationException unless `bucket` exists, is reachable and lies in the service's region."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            location = self.client.get_bucket_location(Bucket=bucket).get("LocationConstraint") or "us-east-1"
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise ValidationException(
                f"S3OutputLocation bucket '{bucket}' cannot be used: {error.get('Code')}: {error.get('Message')}"
            ) from None
        except BotoCoreError as exc:
            raise ValidationException(f"S3OutputLocation bucket '{bucket}' cannot be reached: {exc}") from None
        if location != self.region:
            raise ValidationException(
                f"S3OutputLocation bucket '{bucket}' is in {location}; the output bucket must be in this service's "
                f"region, {self.region}"
            )

    def put_file(self, bucket: str, key: str, source: Path) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.upload_file(
                str(source), bucket, key, ExtraArgs={"ChecksumAlgorithm": "SHA256"}, Config=self.transfer
            )
            stored = self.client.head_object(Bucket=bucket, Key=key)["ContentLength"]
        except (BotoCoreError, ClientError) as exc:
            raise S3OutputError(f"uploading {s3_uri(bucket, key)} failed: {exc}") from exc
        if stored != source.stat().st_size:
            raise S3OutputError(f"{s3_uri(bucket, key)} holds {stored} bytes, not {source.stat().st_size}")
        return s3_uri(bucket, key)

    def get_file(self, bucket: str, key: str, destination: Path) -> Path:
        from botocore.exceptions import BotoCoreError, ClientError

        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.client.download_file(bucket, key, str(destination), Config=self.transfer)
        except (BotoCoreError, ClientError) as exc:
            raise FileNotFoundError(f"{s3_uri(bucket, key)} cannot be read: {exc}") from None
        return destination
