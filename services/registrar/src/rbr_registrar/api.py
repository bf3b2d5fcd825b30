"""The registrar's HTTP API: registration, a bucket's own updates, the operator API, health.

Routes are thin: they check credentials, turn requests into domain commands and map the
decisions back to answers. Registrations go through the group committer; everything else
calls the store (`store.py`) on FastAPI's thread pool.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from functools import partial
from typing import Annotated, Any

from confluent_kafka import KafkaException
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram
from starlette.requests import Request
from starlette.responses import JSONResponse

from rbr_registrar import errors
from rbr_registrar.client_address import (
    UnknownClientAddress,
    client_address,
    plain_address,
)
from rbr_registrar.committer import GroupCommitter
from rbr_registrar.console.app import ConsoleParts, install_console
from rbr_registrar.docs_ui import install_docs
from rbr_registrar.domain import (
    Decision,
    Registration,
    S3Config,
    SelfUpdate,
    Verdict,
)
from rbr_registrar.fast_path import REGISTRATION_PATHS, FastRegistrations, RegistrarApp
from rbr_registrar.intel_api import intel_routes, ioc_routes
from rbr_registrar.limits import BodyLimit
from rbr_registrar.merges import BucketMerges, MergeRefused
from rbr_registrar.models import (
    DEFAULT_S3_PREFIX,
    DEFAULT_S3_REGION,
    NAME_PREFIX_PATTERN,
    AdoptRequest,
    BucketPage,
    BucketView,
    ChangeResponse,
    DeliveryModeRequest,
    ErrorResponse,
    MergeRequest,
    MergeResponse,
    NewBucketRequest,
    NewBucketResponse,
    RegistrationRequest,
    RegistrationResponse,
    RegistrationStatus,
    RekeyResponse,
    ReseedResponse,
    S3SourceRequest,
    SelfUpdateRequest,
    SourcePage,
    SourceView,
    StartView,
)
from rbr_registrar.operator.audit import record_audit
from rbr_registrar.operator.auth import Actor, Role, require_role
from rbr_registrar.operator.queries import bucket_page, bucket_view
from rbr_registrar.operator.routes import Admin, Operator, OperatorContext, operator_routes
from rbr_registrar.operator.views import BucketFilter
from rbr_registrar.reseed import RegistryReseeder
from rbr_registrar.settings import RegistrarSettings
from rbr_registrar.sources import DropSources, SourceError, SourceRow
from rbr_registrar.store import BucketRepository
from rbr_runtime.buckets import forbidden_port_reason, forbidden_reason
from rbr_runtime.health import HealthState, metrics_payload
from rbr_runtime.secrets import TokenVault, constant_time_in
from rbr_schemas import BucketState, DeliveryMode
from rbr_schemas.events import BUCKET_NAME_PATTERN

log = logging.getLogger(__name__)

REGISTRATIONS = Counter(
    "rbr_registrations_total", "Registrations answered, by outcome.", ["outcome"]
)
REGISTRATION_SECONDS = Histogram(
    "rbr_registration_seconds",
    "Time from a registration's arrival to its durable acknowledgement.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
OPERATOR_ACTIONS = Counter(
    "rbr_operator_actions_total", "Operator actions, by action and outcome.", ["action", "outcome"]
)
ADDRESSES_FROM_PEER = Counter(
    "rbr_registration_addresses_from_request_total",
    "Registrations sent with an unspecified address (0.0.0.0, ::), by how their address was "
    "told: peer (the TCP peer), proxy (a trusted proxy's forwarding header), unknown (it "
    "could not be: refused).",
    ["via"],
)
SELF_UPDATES = Counter(
    "rbr_bucket_self_updates_total", "Buckets' own updates, by outcome.", ["outcome"]
)

bearer = HTTPBearer(auto_error=False, description="Enrollment key or operator key.")
token_header = APIKeyHeader(
    name="Authorization",
    auto_error=False,
    description="The bucket's own token: `Authorization: Token <token>`.",
)
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
NamePath = Annotated[
    str, Path(pattern=BUCKET_NAME_PATTERN, max_length=128, description="The bucket's name.")
]
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Credentials missing."},
    403: {"model": ErrorResponse, "description": "Credentials not accepted."},
    413: {"model": ErrorResponse, "description": "Body too large."},
    422: {
        "model": ErrorResponse,
        "description": "Invalid request, one message per field: a body that is not UTF-8 JSON, "
        "a missing or malformed field, an address or port the registry does not call.",
    },
    503: {"model": ErrorResponse, "description": "Database unavailable; retry."},
}


@dataclass
class Dependencies:
    """What the routes work with."""

    settings: RegistrarSettings
    repository: BucketRepository
    committer: GroupCommitter
    vault: TokenVault
    health: HealthState
    sources: DropSources
    merges: BucketMerges | None = None
    """Merges registrations into buckets (made from the repository when not given)."""
    on_commit: Callable[[], None] = lambda: None
    """Called after an operator's bulk change committed outbox rows (wakes the relay)."""
    reseeder: RegistryReseeder | None = None
    """Compares bucket.registered with the table (`rbr topics reseed`); None: not offered."""
    console: ConsoleParts | None = None
    """The web console's parts (accounts, sessions, templates); None: no console."""


def bucket_merges(deps: Dependencies) -> BucketMerges:
    """Returns the merges of the dependencies, made from the repository on first use."""
    if deps.merges is None:
        deps.merges = BucketMerges(deps.repository)
    return deps.merges


def unauthorised(message: str, scheme: str = "Bearer") -> HTTPException:
    """Returns a 401 asking for credentials."""
    return HTTPException(401, message, headers={"WWW-Authenticate": scheme})


class Surface(StrEnum):
    """Which routes a listener serves."""

    ALL = "all"
    """Everything: the local stack's one port."""
    PUBLIC = "public"
    """Registration, the buckets' own updates and health: faces the honeypots."""
    INTERNAL = "internal"
    """The console, the operator API and health: for the operators' network."""


def create_app(deps: Dependencies, surface: Surface = Surface.ALL) -> FastAPI:
    """Builds the FastAPI application of one listener."""
    app = RegistrarApp(
        title="Rustbucket Registry: registrar",
        version="1.0",
        description="Registration of rustbuckets, their own updates, and the operator API.",
        docs_url=None,
        redoc_url=None,
    )
    install_docs(app)
    app.add_middleware(BodyLimit, max_bytes=deps.settings.max_body_bytes)
    app.state.operator_key = deps.settings.operator_key
    errors.install(app)
    if surface is not Surface.INTERNAL:
        app.include_router(_registration_routes(deps))
        app.include_router(_self_update_routes(deps))
        app.fast_registrations = FastRegistrations(
            app, partial(register, deps), bearer, deps.settings.max_body_bytes
        )
    if surface is not Surface.PUBLIC:
        _include_operator_routes(app, deps)
    app.include_router(_health_routes(deps.health))
    return app


def _include_operator_routes(app: FastAPI, deps: Dependencies) -> None:
    """The operator API and the console: on the internal listener (or the only one)."""
    app.include_router(_merge_routes(deps))
    app.include_router(_rekey_routes(deps))
    app.include_router(_operator_routes(deps))
    app.include_router(_source_routes(deps))
    app.include_router(_topic_routes(deps))
    app.include_router(_ioc_routes(deps))
    app.include_router(_intel_routes(deps))
    context = OperatorContext(
        engine=deps.repository.engine,
        store=deps.repository,
        merges=bucket_merges(deps),
        settings=deps.settings,
        on_commit=deps.on_commit,
        log_search_timeout=deps.settings.log_search_timeout,
    )
    for router in operator_routes(context):
        app.include_router(router)
    if deps.console is not None:
        install_console(app, deps.console)


# -- registration ------------------------------------------------------------------------------


def _enrolled(deps: Dependencies, presented: str | None) -> bool:
    """Checks the enrollment key; True when the bucket may be active at once.

    Raises:
        HTTPException: 401 when a key is required but missing, 403 when it is wrong.
    """
    keys = deps.settings.enrollment_keys
    if not keys:
        return False
    if not presented:
        raise unauthorised(
            "this registry requires an enrollment key: send it as registration_key "
            "or as Authorization: Bearer <key>"
        )
    if not constant_time_in(presented, keys):
        raise HTTPException(403, "enrollment key not accepted")
    return True


def _registration(deps: Dependencies, payload: RegistrationRequest, enrolled: bool) -> Registration:
    s3 = None
    if payload.s3_bucket_name is not None:
        s3 = S3Config(
            payload.s3_bucket_name,
            payload.s3_region or DEFAULT_S3_REGION,
            payload.s3_prefix or DEFAULT_S3_PREFIX,
        )
    current, *earlier = deps.vault.fingerprints(payload.token)
    return Registration(
        name=payload.name,
        ip_address=payload.ip_address,
        port=payload.port,
        tls_cert_sha256=payload.tls_cert_sha256,
        delivery_mode=payload.delivery_mode,
        operating_system=payload.operating_system,
        metrics=payload.reported_metrics(),
        s3=s3,
        token_hash=current,
        token_ciphertext=deps.vault.encrypt(payload.token),
        enrolled=enrolled,
        earlier_token_hashes=tuple(earlier),
    )


UNSPECIFIED_ADDRESSES = frozenset({"0.0.0.0", "::"})  # noqa: S104 - addresses nobody calls
"""The unspecified addresses as `models.normalise_ip` writes every address a payload holds
(`client_address.is_unspecified` without parsing the address a third time)."""


def _address_from_request(
    settings: RegistrarSettings, payload: RegistrationRequest, request: Request
) -> RegistrationRequest:
    """Returns the payload with an unspecified address replaced by the request's own.

    The real rustbucket registers `0.0.0.0` when it could not learn its public address; the
    address the registration came from (`client_address.py`) is then the honeypot's.

    Raises:
        errors.FieldErrors: that address cannot be told (422).
    """
    if payload.ip_address not in UNSPECIFIED_ADDRESSES:
        return payload
    peer = request.client.host if request.client else None
    header = settings.trusted_proxy_header
    try:
        address = client_address(
            peer, request.headers.getlist(header.value), settings.trusted_proxies, header
        )
    except UnknownClientAddress as error:
        ADDRESSES_FROM_PEER.labels("unknown").inc()
        raise errors.FieldErrors(
            [
                (
                    "ip_address",
                    f"is unspecified ({payload.ip_address}) and the address the registration "
                    f"came from cannot be told: {error}; send the bucket's address",
                )
            ]
        ) from None
    ADDRESSES_FROM_PEER.labels("peer" if address == plain_address(peer or "") else "proxy").inc()
    log.info(
        "bucket %s registered with the unspecified address %s: using %s, the address the "
        "registration came from",
        payload.name,
        payload.ip_address,
        address,
        extra={"bucket": payload.name},
    )
    return payload.model_copy(update={"ip_address": address})


def _refused_target(
    settings: RegistrarSettings, payload: RegistrationRequest, sent_address: str | None = None
) -> list[tuple[str, str]]:
    """Returns what is wrong with where the registry would call the bucket (empty if nothing).

    The poller and the log-extractor check the same again before every call. `sent_address`
    is the unspecified address the bucket sent, when the request's address replaced it.
    """
    refused = []
    reason = forbidden_reason(payload.ip_address, settings.allowed_bucket_networks)
    if reason is not None and sent_address is not None:
        refused.append(
            (
                "ip_address",
                f"is unspecified ({sent_address}), so the address the registration came from "
                f"is used: {payload.ip_address}, which is refused: {reason}",
            )
        )
    elif reason is not None:
        refused.append(("ip_address", f"{payload.ip_address} is refused: {reason}"))
    if payload.port is not None:
        reason = forbidden_port_reason(payload.port, settings.allowed_bucket_ports)
        if reason is not None:
            refused.append(("port", f"is refused: {reason}"))
    return refused


def _registration_answer(decision: Decision, name: str) -> JSONResponse:
    """Returns the answer of a registration: a `RegistrationResponse`'s JSON.

    Built directly: FastAPI would validate and serialise the model again, at every
    registration, to the same bytes.
    """
    if decision.verdict is Verdict.CONFLICT:
        raise HTTPException(
            409,
            f"a bucket named {name} is already registered with a different token; "
            "nothing was changed",
        )
    if decision.verdict is Verdict.DISABLED:
        raise HTTPException(403, f"bucket {name} was disabled by an operator; nothing was changed")
    row = decision.row
    assert row is not None
    if row.state == BucketState.PENDING:
        status = RegistrationStatus.PENDING
    elif decision.verdict is Verdict.CREATED:
        status = RegistrationStatus.REGISTERED
    else:
        status = RegistrationStatus.UPDATED
    return JSONResponse({"status": status.value, "id": row.id})


async def register(
    deps: Dependencies,
    payload: RegistrationRequest,
    request: Request,
    credentials: HTTPAuthorizationCredentials | None,
) -> JSONResponse:
    """Serves one registration (both for the route and for `fast_path.FastRegistrations`).

    Raises:
        HTTPException: 401 or 403 (enrollment key), 409 (name taken), 403 (disabled).
        errors.FieldErrors: an address or port the registry does not call (422).
        Exception: what the group committer raised (the app's handlers answer it).
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    presented = payload.registration_key or (credentials.credentials if credentials else None)
    try:
        enrolled = _enrolled(deps, presented)
    except HTTPException:
        REGISTRATIONS.labels("refused_key").inc()
        raise
    sent = payload.ip_address
    try:
        payload = _address_from_request(deps.settings, payload, request)
    except errors.FieldErrors:
        REGISTRATIONS.labels("forbidden_address").inc()
        raise
    refused = _refused_target(deps.settings, payload, sent if sent != payload.ip_address else None)
    if refused:
        REGISTRATIONS.labels("forbidden_address").inc()
        raise errors.FieldErrors(refused)
    registration = _registration(deps, payload, enrolled)
    decision = await deps.committer.decide(registration)
    REGISTRATIONS.labels(decision.verdict.value).inc()
    REGISTRATION_SECONDS.observe(loop.time() - started)
    if decision.writes:
        log.info(
            "bucket %s %s (version %d)",
            payload.name,
            decision.verdict.value,
            decision.row.version if decision.row else 0,
            extra={"bucket": payload.name},
        )
    return _registration_answer(decision, payload.name)


def _registration_routes(deps: Dependencies) -> APIRouter:
    router = APIRouter(tags=["buckets: registration"])

    async def register_bucket(
        payload: RegistrationRequest, request: Request, credentials: BearerCredentials = None
    ) -> JSONResponse:
        """Registers a bucket, or updates the registration of a bucket with the same token.

        Answers 200 with `registered` (new, active), `pending` (new or unchanged, waiting for
        an operator) or `updated` (known bucket, same token). 409 when the name is taken by a
        bucket with another token; nothing is changed then. An unspecified `ip_address`
        (`0.0.0.0`, `::`) is replaced by the address the registration came from.
        """
        return await register(deps, payload, request, credentials)

    kwargs = {
        "response_model": RegistrationResponse,
        "responses": {409: {"model": ErrorResponse, "description": "Name taken."}, **ERRORS},
    }
    main_path, *others = REGISTRATION_PATHS
    router.post(main_path, **kwargs)(register_bucket)  # type: ignore[arg-type]
    for path in others:
        router.post(path, include_in_schema=path == "/register_bucket", **kwargs)(  # type: ignore[arg-type]
            register_bucket
        )
    return router


# -- a bucket's own updates ----------------------------------------------------------------------


def _self_update(payload: SelfUpdateRequest) -> SelfUpdate:
    sent = payload.model_fields_set
    if ("s3_region" in sent or "s3_prefix" in sent) and "s3_bucket_name" not in sent:
        raise errors.FieldErrors(
            [("s3_bucket_name", "is required when s3_region or s3_prefix is sent")]
        )
    s3 = None
    if payload.s3_bucket_name is not None:
        s3 = S3Config(
            payload.s3_bucket_name,
            payload.s3_region or DEFAULT_S3_REGION,
            payload.s3_prefix or DEFAULT_S3_PREFIX,
        )
    return SelfUpdate(
        metrics=payload.reported_metrics(),
        operating_system=payload.operating_system,
        s3=s3,
        remove_s3="s3_bucket_name" in sent and payload.s3_bucket_name is None,
    )


def _presented_token(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "token" or not token.strip():
        raise unauthorised("send the bucket's token as Authorization: Token <token>", "Token")
    return token.strip()


def _self_update_routes(deps: Dependencies) -> APIRouter:
    router = APIRouter(tags=["buckets: self-service"])

    @router.patch(
        "/api/v1/buckets/{name}/self",
        response_model=ChangeResponse,
        responses=ERRORS,
    )
    def update_own_bucket(
        name: NamePath,
        payload: SelfUpdateRequest,
        authorization: Annotated[str | None, Depends(token_header)] = None,
    ) -> ChangeResponse:
        """A bucket updates its own metrics, operating system or S3 source.

        Authenticated by the bucket's token (`Authorization: Token <token>`). Fields left out
        keep their value; `"s3_bucket_name": null` removes the S3 source. A change is
        re-published on `bucket.registered`.
        """
        token = _presented_token(authorization)
        change = replace(
            _self_update(payload),
            token_hash=deps.vault.fingerprint(token),
            token_ciphertext=deps.vault.encrypt(token),
        )
        decision = deps.repository.self_update(
            name, lambda row: deps.vault.matches(token, row.token_hash), change
        )
        if decision is None or decision.row is None:
            SELF_UPDATES.labels("refused").inc()
            raise HTTPException(403, "token not accepted for this bucket")
        SELF_UPDATES.labels(decision.verdict.value).inc()
        row = decision.row
        return ChangeResponse(
            status=decision.verdict.value,
            id=row.id,
            name=row.name,
            state=BucketState(row.state),
            version=row.version,
        )

    return router


# -- operators -------------------------------------------------------------------------------------


def _not_found(name: str) -> HTTPException:
    return HTTPException(404, f"no bucket named {name}")


def _operator_router() -> APIRouter:
    return APIRouter(
        prefix="/api/v1/buckets",
        tags=["operators"],
        dependencies=[Depends(require_role(Role.VIEWER))],
        responses={404: {"model": ErrorResponse, "description": "No such bucket."}, **ERRORS},
    )


def _merge_routes(deps: Dependencies) -> APIRouter:
    router = _operator_router()

    @router.post(
        "/{name}/merge",
        response_model=MergeResponse,
        responses={409: {"model": ErrorResponse, "description": "Merged elsewhere before."}},
    )
    def merge_bucket(actor: Operator, name: NamePath, payload: MergeRequest) -> MergeResponse:
        """Merges a registration into the bucket it replaces (a honeypot's restart).

        The bucket `into` keeps its id, name, state and history, and takes the registration's
        token, address and metrics (unless the registration is older than the one whose token
        the bucket holds: then only its name). The registration's name becomes an alias of
        the bucket, and the registration is removed (tombstone on `bucket.registered`).
        Merging again answers `unchanged`. 404 unknown names, 409 a name merged elsewhere,
        422 a bucket into itself; nothing is changed then.
        """
        engine, into = deps.repository.engine, {"into": payload.into}
        try:
            result = bucket_merges(deps).merge(name, payload.into)
        except MergeRefused as refused:
            OPERATOR_ACTIONS.labels("merge", f"refused_{refused.status}").inc()
            record_audit(
                engine, actor, "bucket.merge", name, f"refused_{refused.status}", detail=into
            )
            raise HTTPException(refused.status, refused.message) from None
        OPERATOR_ACTIONS.labels("merge", result.status).inc()
        record_audit(engine, actor, "bucket.merge", name, result.status, detail=into)
        if result.status == "merged":
            deps.on_commit()
            log.info(
                "operator merged bucket %s into %s (%s)",
                name,
                result.bucket.name,
                "token and address taken" if result.identity_taken else "name only",
                extra={"bucket": result.bucket.name},
            )
        bucket = result.bucket
        return MergeResponse(
            status=result.status,
            merged=name,
            id=bucket.id,
            name=bucket.name,
            state=BucketState(bucket.state),
            version=bucket.version,
            identity_taken=result.identity_taken,
        )

    return router


def _rekey_routes(deps: Dependencies) -> APIRouter:
    router = _operator_router()

    @router.post("/rekey", response_model=RekeyResponse)
    def rekey_buckets(
        actor: Admin,
        dry_run: Annotated[
            bool, Query(description="Only count the buckets still under an older key.")
        ] = False,
        after: Annotated[
            str | None, Query(max_length=128, description="Name to continue after (paging).")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000, description="Buckets per page.")] = 200,
    ) -> RekeyResponse:
        """Stores one page of buckets' tokens again under the current secret key.

        For secret key rotation: a bucket whose token is encrypted or hashed under an older
        key of `RBR_SECRET_KEY` is decrypted, encrypted and hashed again under the first
        key, and re-published on `bucket.registered` with a new version. Call it page by
        page (`after` = the previous `next_after`) until `next_after` is null. With
        `dry_run` nothing changes: the counts say how many are still under an older key.
        Buckets no configured key decrypts are listed by name and left as they are.
        """
        page = deps.repository.rekey(deps.vault, after, limit, dry_run)
        if page.rekeyed:
            deps.on_commit()
        action = "rekey_dry_run" if dry_run else "rekey"
        OPERATOR_ACTIONS.labels(action, "rekeyed").inc(page.rekeyed)
        OPERATOR_ACTIONS.labels(action, "undecryptable").inc(len(page.undecryptable))
        log.info(
            "operator %s: %d checked, %d current, %d under an older key, %d re-keyed, "
            "%d undecryptable",
            action,
            page.checked,
            page.current,
            page.stale,
            page.rekeyed,
            len(page.undecryptable),
        )
        if not dry_run:
            detail = {"after": after, "checked": page.checked, "rekeyed": page.rekeyed}
            record_audit(deps.repository.engine, actor, "bucket.rekey", None, "ok", detail=detail)
        return RekeyResponse(dry_run=dry_run, **asdict(page))

    return router


def _operator_routes(deps: Dependencies) -> APIRouter:
    router = _operator_router()

    @router.get("", response_model=BucketPage)
    def list_buckets(
        state: Annotated[
            BucketState | None, Query(description="Only buckets in this state.")
        ] = None,
        mode: Annotated[
            DeliveryMode | None, Query(description="Only buckets of this delivery mode.")
        ] = None,
        prefix: Annotated[
            str | None,
            Query(pattern=NAME_PREFIX_PATTERN, description="Only names starting with this."),
        ] = None,
        after: Annotated[
            str | None, Query(max_length=128, description="Name to continue after (paging).")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> BucketPage:
        """Lists buckets by name, with state, mode, last_seen and latest metrics."""
        where = BucketFilter(state=state, mode=mode, prefix=prefix)
        return bucket_page(deps.repository, bucket_merges(deps), where, after, limit)

    @router.get("/{name}", response_model=BucketView)
    def get_bucket(name: NamePath) -> BucketView:
        """Returns one bucket (404 for a merged name, saying which bucket it designates)."""
        row = deps.repository.find_by_name(name)
        if row is None:
            merged_into = bucket_merges(deps).merged_into(name)
            if merged_into is not None:
                raise HTTPException(
                    404, f"no bucket named {name}: it was merged into bucket {merged_into}"
                )
            raise _not_found(name)
        return bucket_view(row, bucket_merges(deps).lineages([row])[row.id])

    def change(
        actor: Actor, action: str, name: str, decision: Decision | None, **detail: Any
    ) -> ChangeResponse:
        # One audit action for every mode (the mode is in the detail); metrics keep theirs.
        audited = (
            "bucket.delivery_mode" if action.startswith("delivery_mode_") else f"bucket.{action}"
        )
        if decision is None or decision.row is None:
            OPERATOR_ACTIONS.labels(action, "not_found").inc()
            record_audit(deps.repository.engine, actor, audited, name, "not_found", detail=detail)
            raise _not_found(name)
        OPERATOR_ACTIONS.labels(action, decision.verdict.value).inc()
        record_audit(
            deps.repository.engine, actor, audited, name, decision.verdict.value, detail=detail
        )
        row = decision.row
        log.info(
            "operator %s bucket %s: %s",
            action,
            name,
            decision.verdict.value,
            extra={"bucket": name},
        )
        return ChangeResponse(
            status=decision.verdict.value,
            id=row.id,
            name=row.name,
            state=BucketState(row.state),
            version=row.version,
        )

    @router.post("/{name}/approve", response_model=ChangeResponse)
    def approve_bucket(actor: Operator, name: NamePath) -> ChangeResponse:
        """Makes a pending or disabled bucket active: it is polled and its logs pulled."""
        return change(actor, "approve", name, deps.repository.approve(name))

    @router.post("/{name}/disable", response_model=ChangeResponse)
    def disable_bucket(actor: Operator, name: NamePath) -> ChangeResponse:
        """Disables a bucket: it is no longer polled nor pulled, and cannot re-register."""
        return change(actor, "disable", name, deps.repository.disable(name))

    @router.put("/{name}/delivery-mode", response_model=ChangeResponse)
    def set_delivery_mode(
        actor: Operator, name: NamePath, payload: DeliveryModeRequest
    ) -> ChangeResponse:
        """Sets how the bucket's logs reach the registry: pull, agent or s3-drop.

        An `s3-drop` bucket is never polled nor pulled: its logs are read from its S3
        sources and its health is the freshness of its uploads. The mode is then pinned:
        linking a drop folder no longer changes it.
        """
        decision = deps.repository.set_delivery_mode(name, payload.mode)
        return change(
            actor, f"delivery_mode_{payload.mode.value}", name, decision, mode=payload.mode.value
        )

    @router.put("/{name}/s3-source", response_model=ChangeResponse)
    def set_s3_source(actor: Operator, name: NamePath, payload: S3SourceRequest) -> ChangeResponse:
        """Sets where the bucket writes its own logs: the objects under `{prefix}{name}/`.

        (Drop folders named otherwise, e.g. a honeypot's instance folders, are linked with
        `POST /api/v1/sources/adopt`.)
        """
        s3 = S3Config(payload.bucket_name, payload.region, payload.prefix)
        decision = deps.repository.set_s3_source(name, s3)
        return change(actor, "set_s3_source", name, decision, s3=payload.model_dump())

    @router.delete("/{name}/s3-source", response_model=ChangeResponse)
    def remove_s3_source(actor: Operator, name: NamePath) -> ChangeResponse:
        """Removes the bucket's own S3 source (its linked drop folders stay)."""
        decision = deps.repository.set_s3_source(name, None)
        return change(actor, "remove_s3_source", name, decision)

    @router.delete("/{name}", response_model=ChangeResponse)
    def remove_bucket(actor: Operator, name: NamePath) -> ChangeResponse:
        """Removes a bucket; a tombstone on bucket.registered tells the other services."""
        row = deps.repository.remove(name)
        outcome = "not_found" if row is None else "removed"
        record_audit(deps.repository.engine, actor, "bucket.remove", name, outcome)
        if row is None:
            OPERATOR_ACTIONS.labels("remove", "not_found").inc()
            raise _not_found(name)
        OPERATOR_ACTIONS.labels("remove", "removed").inc()
        log.info("operator removed bucket %s", name, extra={"bucket": name})
        return ChangeResponse(status="removed", id=row.id, name=row.name)

    return router


# -- drop sources ----------------------------------------------------------------------------------


def source_view(row: SourceRow) -> SourceView:
    """Returns what operators see of a drop folder."""
    return SourceView(
        id=row.id,
        uri=row.uri,
        location=row.location,
        region=row.region,
        folder=row.folder,
        bucket=row.bucket,
        linked_by=row.linked_by,
        linked_at=row.linked_at,
        objects=row.objects,
        size_bytes=row.size_bytes,
        newest_upload_at=row.newest_upload_at,
        starts=[StartView(instance_name=str(i), registered_name=r) for i, r in row.starts],
        first_seen_at=row.first_seen_at,
        last_seen_at=row.last_seen_at,
    )


def _source_failed(action: str, error: SourceError) -> HTTPException:
    OPERATOR_ACTIONS.labels(action, "refused").inc()
    return HTTPException(error.status, str(error))


def _source_routes(deps: Dependencies) -> APIRouter:
    router = APIRouter(
        prefix="/api/v1/sources",
        tags=["operators: drop sources"],
        dependencies=[Depends(require_role(Role.VIEWER))],
        responses={
            404: {"model": ErrorResponse, "description": "No such source or bucket."},
            409: {"model": ErrorResponse, "description": "Linked elsewhere, or name taken."},
            **ERRORS,
        },
    )

    @router.get("", response_model=SourcePage)
    def list_sources(
        unclaimed: Annotated[
            bool | None, Query(description="true: only unclaimed; false: only linked.")
        ] = None,
        bucket: Annotated[
            str | None,
            Query(pattern=BUCKET_NAME_PATTERN, max_length=128, description="Only this bucket's."),
        ] = None,
        after: Annotated[int | None, Query(ge=0, description="Id to continue after.")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> SourcePage:
        """Lists the instance folders found in the drop locations and the bucket each feeds."""
        rows, total = deps.sources.list_sources(
            unclaimed=unclaimed, bucket=bucket, after=after, limit=limit
        )
        next_after = rows[-1].id if len(rows) == limit else None
        return SourcePage(
            sources=[source_view(r) for r in rows], next_after=next_after, total=total
        )

    @router.post("/adopt", response_model=SourceView)
    def adopt_source(actor: Operator, payload: AdoptRequest) -> SourceView:
        """Links a drop folder to an existing bucket: its files become that bucket's logs.

        A bucket that never answered a poll becomes `s3-drop` (unless its mode is pinned).
        409 when the folder feeds another bucket, unless `move` is true.
        """
        engine = deps.repository.engine
        detail = {"bucket": payload.bucket, "move": payload.move}
        try:
            source, decision = deps.sources.adopt(payload.source, payload.bucket, move=payload.move)
        except SourceError as error:
            record_audit(engine, actor, "source.adopt", payload.source, "refused", detail=detail)
            raise _source_failed("adopt_source", error) from error
        record_audit(engine, actor, "source.adopt", payload.source, "linked", detail=detail)
        if decision.writes:
            deps.on_commit()
        OPERATOR_ACTIONS.labels("adopt_source", "linked").inc()
        log.info("operator linked %s to bucket %s", source.uri, payload.bucket)
        return source_view(source)

    @router.post("/new-bucket", response_model=NewBucketResponse)
    def new_bucket_from_source(actor: Operator, payload: NewBucketRequest) -> NewBucketResponse:
        """Makes a new active `s3-drop` bucket of an unclaimed drop folder.

        The bucket is named after the folder unless `name` is given; it is never called, so
        its address is only informative.
        """
        engine = deps.repository.engine
        try:
            source, row = deps.sources.create_bucket(
                payload.source,
                name=payload.name,
                ip_address=payload.ip_address,
                operating_system=payload.operating_system,
            )
        except SourceError as error:
            record_audit(engine, actor, "source.new_bucket", payload.source, "refused")
            raise _source_failed("new_bucket_from_source", error) from error
        record_audit(
            engine,
            actor,
            "source.new_bucket",
            payload.source,
            "created",
            detail={"bucket": row.name},
        )
        deps.on_commit()
        OPERATOR_ACTIONS.labels("new_bucket_from_source", "created").inc()
        log.info("operator made bucket %s of %s", row.name, source.uri)
        return NewBucketResponse(
            bucket=ChangeResponse(
                status="created",
                id=row.id,
                name=row.name,
                state=BucketState(row.state),
                version=row.version,
            ),
            source=source_view(source),
        )

    return router


# -- health --------------------------------------------------------------------------------------


def _topic_routes(deps: Dependencies) -> APIRouter:
    router = APIRouter(
        prefix="/api/v1/topics",
        tags=["operators"],
        dependencies=[Depends(require_role(Role.VIEWER))],
        responses=ERRORS,
    )

    @router.post("/bucket.registered/reseed", response_model=ReseedResponse)
    def reseed_registrations(
        actor: Operator,
        dry_run: Annotated[
            bool, Query(description="Only compare: report what would be published.")
        ] = False,
    ) -> ReseedResponse:
        """Publishes bucket.registered again from the buckets table where it differs.

        Reads the topic to its end and compares the last record of each bucket with the
        table: buckets it lacks or holds under another version get their current record,
        names it still holds but the registry no longer has get a tombstone. What is queued
        goes through the outbox (published in order within seconds). Nothing is queued when
        the topic already holds the registry, so it is safe to repeat.
        """
        if deps.reseeder is None:
            raise HTTPException(503, "this registrar does not check bucket.registered")
        try:
            report = deps.reseeder.check(dry_run=dry_run)
        except (KafkaException, TimeoutError) as error:
            raise HTTPException(
                503, f"cannot read bucket.registered from the broker: {error}"
            ) from error
        plan = report.plan
        if not dry_run:
            queued = {"records": report.records_queued, "tombstones": report.tombstones_queued}
            record_audit(
                deps.repository.engine,
                actor,
                "topic.reseed",
                "bucket.registered",
                "ok",
                detail=queued,
            )
        OPERATOR_ACTIONS.labels("reseed_dry_run" if dry_run else "reseed", "ok").inc()
        log.info(
            "operator reseed%s: %d registered, %d on the topic, %d missing, %d stale, "
            "%d removed; queued %d record(s), %d tombstone(s)",
            " (dry run)" if dry_run else "",
            plan.registered,
            plan.on_topic,
            len(plan.missing),
            len(plan.stale),
            len(plan.removed),
            report.records_queued,
            report.tombstones_queued,
        )
        return ReseedResponse(
            dry_run=dry_run,
            registered=plan.registered,
            on_topic=plan.on_topic,
            topic_missing=plan.topic_missing,
            missing=plan.missing,
            stale=plan.stale,
            removed=plan.removed,
            waiting=plan.waiting,
            records_queued=report.records_queued,
            tombstones_queued=report.tombstones_queued,
        )

    return router


def _ioc_routes(deps: Dependencies) -> APIRouter:
    return ioc_routes(deps.repository.engine, require_role(Role.VIEWER), {**ERRORS})


def _intel_routes(deps: Dependencies) -> APIRouter:
    return intel_routes(deps.repository.engine, require_role(Role.VIEWER), {**ERRORS})


def _health_routes(health: HealthState) -> APIRouter:
    router = APIRouter(tags=["health"], include_in_schema=False)

    @router.get("/healthz")
    def healthz() -> JSONResponse:
        ok, body = health.liveness()
        return JSONResponse(body, status_code=200 if ok else 503)

    @router.get("/readyz")
    def readyz() -> JSONResponse:
        ok, body = health.readiness()
        return JSONResponse(body, status_code=200 if ok else 503)

    @router.get("/metrics")
    def metrics() -> Response:
        return Response(metrics_payload(), media_type=CONTENT_TYPE_LATEST)

    return router
