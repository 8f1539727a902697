"""Create the artifact bucket named by ``INTENTLOOP_ARTIFACTS__URL`` if it does not exist (idempotent).

The Compose file runs it once, before anything publishes or fetches an adapter, with the same image,
settings and credentials (``AWS_*``) as the workers, so it talks to the store exactly as they will.
It uses only the S3 API (``HeadBucket``, ``CreateBucket``), not a vendor's admin client, so it works
with MinIO, Ceph, SeaweedFS, Garage or AWS alike.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from intentloop.settings import Settings
from store.artifacts_s3 import parse_s3_url

log = logging.getLogger("create_bucket")

_MISSING = {"404", "NoSuchBucket", "NotFound"}
_OURS = {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}


def ensure_bucket(client: Any, bucket: str, region: str | None) -> bool:
    """True if the bucket was created now, False if it was there already."""
    from botocore.exceptions import ClientError

    try:
        client.head_bucket(Bucket=bucket)
        return False
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in _MISSING:
            raise
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if region and region != "us-east-1":  # us-east-1 refuses an explicit location constraint
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        client.create_bucket(**kwargs)
    except ClientError as exc:  # a second runner won the race: that is success too
        if exc.response.get("Error", {}).get("Code") not in _OURS:
            raise
        return False
    return True


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    artifacts = Settings().artifacts
    if artifacts.url is None:
        log.error("INTENTLOOP_ARTIFACTS__URL is unset: nothing to create (artifacts are local)")
        return 2
    import boto3

    bucket, _prefix = parse_s3_url(artifacts.url)
    client = boto3.client("s3", endpoint_url=artifacts.endpoint_url, region_name=artifacts.region)
    created = ensure_bucket(client, bucket, artifacts.region)
    log.info("bucket %s %s", bucket, "created" if created else "already exists")
    return 0


if __name__ == "__main__":
    sys.exit(main())
