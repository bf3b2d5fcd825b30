"""The operator API's threat intelligence: IOC exports, techniques, and the fleet overview.

The `iocs` table belongs to the analyst; the registrar only reads it, through the export code
in `rbr_runtime.intel.export` (no import of the analyst service). Answers are streamed: the
table is read a page at a time however many indicators it holds.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from sqlalchemy import Engine

from rbr_runtime.intel.export import (
    MEDIA_TYPES,
    ExportFormat,
    ExportQuery,
    export,
    techniques_seen,
)
from rbr_runtime.intel.indicators import IndicatorType
from rbr_runtime.intel.overview import IntelOverview, Period, overview
from rbr_schemas import utcnow
from rbr_schemas.events import BUCKET_NAME_PATTERN

FILE_NAMES = {
    ExportFormat.STIX: "iocs.stix.json",
    ExportFormat.MISP: "iocs.misp.json",
    ExportFormat.CSV: "iocs.csv",
    ExportFormat.BLOCKLIST: "blocklist.txt",
}


def ioc_routes(
    engine: Engine,
    operator: Callable[..., Any],
    responses: dict[int | str, dict[str, Any]],
    clock: Callable[[], datetime] = utcnow,
) -> APIRouter:
    """Returns the router of the exports (operator key required, like the rest)."""
    router = APIRouter(
        prefix="/api/v1/iocs",
        tags=["threat intelligence"],
        dependencies=[Depends(operator)],
        responses=responses,
    )

    @router.get(
        "/export",
        summary="Export indicators of compromise",
        response_class=StreamingResponse,
        responses={
            200: {
                "description": "The export, streamed.",
                "content": {media: {} for media in MEDIA_TYPES.values()},
            }
        },
    )
    def export_iocs(  # noqa: PLR0917 - the query parameters
        format: Annotated[
            ExportFormat, Query(description="stix (2.1 bundle), misp (event), csv, blocklist")
        ] = ExportFormat.STIX,
        since: Annotated[
            datetime | None,
            Query(description="Only indicators sighted at or after this time (ISO 8601)."),
        ] = None,
        min_confidence: Annotated[int, Query(ge=0, le=100)] = 0,
        type: Annotated[
            list[IndicatorType] | None, Query(description="Only these indicator types.")
        ] = None,
        min_age: Annotated[
            float, Query(ge=0, description="Only indicators first seen this many seconds ago.")
        ] = 0,
        max_age: Annotated[
            float | None, Query(gt=0, description="Only indicators last seen within seconds.")
        ] = None,
    ) -> StreamingResponse:
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        query = ExportQuery(
            since=since,
            min_confidence=min_confidence,
            types=tuple(t.value for t in type) if type else None,
            min_age=min_age,
            max_age=max_age,
        )
        return StreamingResponse(
            export(engine, format, query, clock()),
            media_type=MEDIA_TYPES[format],
            headers={"Content-Disposition": f'attachment; filename="{FILE_NAMES[format]}"'},
        )

    @router.get("/techniques", summary="ATT&CK techniques seen, fleet-wide or by one bucket")
    def techniques(
        bucket: Annotated[
            str | None,
            Query(pattern=BUCKET_NAME_PATTERN, max_length=128, description="One bucket's."),
        ] = None,
    ) -> dict[str, Any]:
        return {"bucket": bucket, "techniques": techniques_seen(engine, bucket)}

    return router


def intel_routes(
    engine: Engine,
    viewer: Callable[..., Any],
    responses: dict[int | str, dict[str, Any]],
    clock: Callable[[], datetime] = utcnow,
) -> APIRouter:
    """Returns the router of `GET /api/v1/intel/overview` (any role may read it)."""
    router = APIRouter(
        prefix="/api/v1/intel",
        tags=["threat intelligence"],
        dependencies=[Depends(viewer)],
        responses=responses,
    )

    @router.get("/overview", response_model=IntelOverview)
    def intel_overview(
        period: Annotated[Period, Query(description="24h, 7d or 30d, ending now.")] = Period.DAY,
    ) -> IntelOverview:
        """The fleet's threat intelligence over a period, as the console's Intel page shows it.

        Top ATT&CK techniques (buckets that saw each, their windows and findings over the
        technique's record), top countries and AS organisations of attacker addresses, and
        the indicators first seen in the period (the 50 most confident, with a defanged
        form; values are attacker-controlled text: escape them when rendering).
        """
        return overview(engine, period, clock())

    return router
