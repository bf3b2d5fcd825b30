"""Headers a consumer adds when it sends a message it cannot process to `<topic>.dlq`.

The dead-lettered message keeps its original key, value and headers; these headers say where
it came from and why it was given up on, so that `rbr dlq replay` can send it back.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field

from rbr_schemas.envelope import UtcDatetime

HEADER_PREFIX = "rbr-dlq-"
DLQ_SUFFIX = ".dlq"


class DeadLetterHeaders(BaseModel):
    """Where a dead-lettered message came from and why it was dead-lettered."""

    model_config = ConfigDict(frozen=True)

    source_topic: str
    source_partition: int = Field(ge=0)
    source_offset: int = Field(ge=0)
    consumer_group: str
    error_class: str = Field(description="Exception class or reason code.")
    error: str = Field(max_length=2000, description="Human-readable reason, free of secrets.")
    failed_at: UtcDatetime

    def to_kafka(self) -> list[tuple[str, bytes]]:
        """Returns the headers as Kafka header tuples (`rbr-dlq-<field>`)."""
        return [
            (f"{HEADER_PREFIX}{name.replace('_', '-')}", str(value).encode())
            for name, value in self.model_dump(mode="json").items()
        ]

    @classmethod
    def from_kafka(cls, headers: Iterable[tuple[str, bytes | None]]) -> DeadLetterHeaders:
        """Reads the DLQ headers back from a dead-lettered message's headers.

        Raises:
            pydantic.ValidationError: a header is missing or malformed.
        """
        fields = {
            name.removeprefix(HEADER_PREFIX).replace("-", "_"): (value or b"").decode(
                "utf-8", "replace"
            )
            for name, value in headers
            if name.startswith(HEADER_PREFIX)
        }
        return cls.model_validate(fields)


def dlq_topic(source_topic: str) -> str:
    """Returns the dead-letter topic of a source topic."""
    return f"{source_topic}{DLQ_SUFFIX}"


def is_dlq_header(name: str) -> bool:
    """Tells whether a header was added by dead-lettering (and must go on replay)."""
    return name.startswith(HEADER_PREFIX)
