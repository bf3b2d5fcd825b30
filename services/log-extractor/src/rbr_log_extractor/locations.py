"""S3 drop locations: where honeypots upload their log files, one folder per instance.

A location is an S3 bucket and a prefix (`s3://BUCKET/PREFIX/`, the prefix may be empty) in
a region; honeypots upload to `PREFIX/<instance name>/<file>` (the real rustbucket's layout,
`[S3_PREFIX/]<instance name>/rustbucket.log.<date>`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_REGION = re.compile(r"[a-z0-9-]{2,32}")
DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True)
class DropLocation:
    """One drop location."""

    bucket: str
    prefix: str
    """Empty, or ending with `/`."""
    region: str = DEFAULT_REGION

    @property
    def uri(self) -> str:
        """Returns `s3://BUCKET/PREFIX/`, the location's name in reports and sources."""
        return f"s3://{self.bucket}/{self.prefix}"

    @property
    def setting(self) -> str:
        """Returns the location as written in RBR_DROP_LOCATIONS (normalised)."""
        region = "" if self.region == DEFAULT_REGION else f"?region={self.region}"
        return self.uri + region

    def folder_prefix(self, folder: str) -> str:
        """Returns the key prefix of an instance folder."""
        return f"{self.prefix}{folder}/"

    def folder_uri(self, folder: str) -> str:
        """Returns an instance folder's URI: `s3://BUCKET/PREFIX/FOLDER/`."""
        return f"{self.uri}{folder}/"


def parse_location(value: str) -> DropLocation:
    """Parses `s3://BUCKET[/PREFIX][/][?region=REGION]`.

    Raises:
        ValueError: not such a URI, with what is wrong.
    """
    parts = urlsplit(value.strip())
    if parts.scheme != "s3":
        raise ValueError("a drop location must be an s3://BUCKET/PREFIX/ URI")
    if _BUCKET.fullmatch(parts.netloc) is None:
        raise ValueError("a drop location's S3 bucket name is not valid")
    regions = parse_qs(parts.query).get("region", [DEFAULT_REGION])
    if _REGION.fullmatch(regions[-1]) is None:
        raise ValueError("a drop location's region must be like us-east-1")
    prefix = parts.path.strip("/")
    if any(ord(ch) < 0x20 for ch in prefix) or len(prefix) > 1024:
        raise ValueError("a drop location's prefix must be printable, at most 1024 characters")
    return DropLocation(parts.netloc, f"{prefix}/" if prefix else "", regions[-1])
