"""The CloudEvents 1.0 envelope every message value is wrapped in (structured JSON mode)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

DataT = TypeVar("DataT", bound=BaseModel)


def _require_timezone(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamps must carry a timezone (RFC 3339)")
    return value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_require_timezone)]
"""A timezone-aware timestamp, normalised to UTC."""


def utcnow() -> datetime:
    """Returns the current time as an aware UTC datetime."""
    return datetime.now(UTC)


class CloudEvent(BaseModel, Generic[DataT]):
    """A CloudEvents 1.0 event in structured JSON mode.

    Unknown extension attributes are accepted and kept, as the CloudEvents spec asks of
    consumers, so an event produced by a newer version of a service still parses.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(
        default_factory=lambda: str(uuid.uuid4()),
        min_length=1,
        description="Unique per producer: the same id seen twice is a redelivery.",
    )
    source: str = Field(
        min_length=1, description="URI reference naming the producer, e.g. /rbr/poller."
    )
    type: str = Field(
        min_length=1, description="Reverse-DNS event type, e.g. io.rustbucket.bucket.status.v1."
    )
    time: UtcDatetime = Field(default_factory=utcnow, description="When the event happened.")
    subject: str | None = Field(
        default=None,
        description="The bucket the event is about. Left out when the event is about no one "
        "bucket (events written by older versions may carry null instead).",
    )
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str | None = Field(
        default=None,
        description="URI of the JSON Schema the data conforms to. Left out when unset (events "
        "written by older versions carry null instead).",
    )
    data: DataT

    def extensions(self) -> dict[str, Any]:
        """Returns the extension attributes that are not part of the core spec."""
        return dict(self.model_extra or {})

    def structured_json(self) -> bytes:
        """Returns the event in structured JSON mode, as it goes on a topic.

        Unset attributes are left out: CloudEvents says an attribute is either set (to a
        non-empty value) or absent, and SDKs refuse one written as null. Nulls inside `data`
        are the data's own and stay.
        """
        attributes = self.model_dump(exclude={"data"})
        unset = {name for name, value in attributes.items() if value is None}
        return self.model_dump_json(exclude=unset).encode()
