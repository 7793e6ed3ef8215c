"""The ``anima serve`` application: a verify page for people, REST for tools, and the C2PA Soft
Binding Resolution API over the ledger (``/v1/matches/byBinding``, ``/v1/matches/byContent``,
``/v1/manifests/{manifestId}``, ``/v1/services/supportedAlgorithms``).

Every check goes through :meth:`anima.Anima.verify`; the ledger is only read. Build the app with
:func:`create_app` (tests do, without a socket); :func:`run` serves it with uvicorn.
"""

from __future__ import annotations

import functools
import hmac
import json
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import anyio
import jinja2
from fastapi import FastAPI, Query, Request
from fastapi import Path as FastAPIPath
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from anima import __version__, media
from anima.api import Anima
from anima.errors import AnimaError, BadInput, MediaError
from anima.ledger import Stamp
from anima.provenance import watermark
from anima.provenance.stamp import manifest_store_bytes
from anima.provenance.verify import Verdict, VerifyReport
from anima.serve import uploads, views
from anima.serve.guards import (
    BodyLimit,
    QueueFull,
    RateLimit,
    RateLimiter,
    Refused,
    SecurityHeaders,
    VerifyQueue,
)
from anima.serve.settings import MULTIPART_OVERHEAD, ServeSettings

HERE = Path(__file__).parent
UPLOAD_PATHS = {"/verify", "/v1/verify", "/v1/matches/byContent"}
MAX_SMALL_BODY = 64 << 10
STAMP_ID = re.compile(r"anm-[0-9a-f]{8}")
MANIFEST_ID = re.compile(r"urn:(c2pa|uuid):[0-9A-Fa-f-]{36}[A-Za-z0-9:._-]{0,200}")
MAX_RESULTS = 100
UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
        },
        "video/*": {"schema": {"type": "string", "format": "binary"}},
        "image/*": {"schema": {"type": "string", "format": "binary"}},
    },
}
PATH_BODY = {"application/json": {"schema": {"type": "object", "properties": {"path": {"type": "string"}}}}}


class SoftBindingQuery(BaseModel):
    """The body of ``POST /v1/matches/byBinding`` (C2PA ``c2pa.softBindingQuery``)."""

    alg: str
    value: str


@dataclass
class Server:
    """What every request of one app shares."""

    anima: Anima
    settings: ServeSettings
    queue: VerifyQueue
    upload_root: Path
    pages: jinja2.Environment

    def authorized(self, request: Request, *, required: bool = False) -> bool:
        """Whether the request carries the operator's bearer token. A wrong token is refused (401),
        never taken as no token; ``required`` refuses a missing one too."""
        header = request.headers.get("authorization")
        if header is None:
            if required:
                raise Refused(401, "this needs the operator's bearer token", {"WWW-Authenticate": "Bearer"})
            return False
        scheme, _, given = header.partition(" ")
        token = self.settings.token
        if (
            scheme.lower() != "bearer"
            or token is None
            or not hmac.compare_digest(given.encode(), token.encode())
        ):
            raise Refused(401, "invalid bearer token", {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return True


def create_app(anima: Anima, settings: ServeSettings | None = None) -> FastAPI:
    """The server for one deployment (``anima``'s ledger, keys and detector), with ``settings``
    (default: the safe defaults of :class:`ServeSettings`)."""
    settings = settings or ServeSettings()
    _ = anima.ledger  # opened once here, before worker threads share it
    upload_root = Path(tempfile.mkdtemp(prefix="anima-serve-"))  # 0700, only this user's uploads
    pages = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    server = Server(anima, settings, VerifyQueue(settings.workers, settings.queue), upload_root, pages)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            shutil.rmtree(upload_root, ignore_errors=True)

    app = FastAPI(
        title="Anima verify",
        version=__version__,
        description="Verify clips and stills; resolve C2PA soft bindings (Anima's watermark) to manifests.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.server = server
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    _error_handlers(app, server)
    _page_routes(app, server)
    _rest_routes(app, server)
    _soft_binding_routes(app, server)
    _openapi_without_422(app)
    app.add_middleware(
        BodyLimit,
        max_body=settings.max_upload_bytes + MULTIPART_OVERHEAD,
        upload_paths=UPLOAD_PATHS,
        max_small_body=MAX_SMALL_BODY,
    )
    app.add_middleware(RateLimit, limiter=RateLimiter(settings.rate_limit) if settings.rate_limit else None)
    app.add_middleware(SecurityHeaders)
    return app


def _openapi_without_422(app: FastAPI) -> None:
    """The schema as the API answers: invalid requests are 400 here (as the C2PA API says), not 422."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                operation.get("responses", {}).pop("422", None)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _error_handlers(app: FastAPI, server: Server) -> None:
    @app.exception_handler(Refused)
    async def refused(_request: Request, exc: Refused) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error.get('loc', ()))}: {error.get('msg', '')}"
            for error in exc.errors()
        )
        return JSONResponse({"detail": f"invalid request: {problems}"}, status_code=400)


# ------------------------------------------------------------------ verification


@dataclass
class Checked:
    report: VerifyReport
    filename: str
    thumbnails: list[str]


def _verify_file(anima: Anima, path: Path, trust: tuple[Path, ...], with_thumbnails: bool) -> tuple[Any, ...]:
    report = anima.verify(path, trust=trust)
    return report, views.thumbnails(path) if with_thumbnails else []


async def _check(server: Server, request: Request, *, with_thumbnails: bool = False) -> Checked:
    """Receive the file (or take an allowed server-side path), check its limits, verify it on a
    worker; the upload is gone when this returns or raises, whatever happened."""
    settings = server.settings
    try:
        async with server.queue.slot():
            with uploads.private_folder(server.upload_root) as folder:
                if request.headers.get("content-type", "").startswith("application/json"):
                    path, filename = await _server_side_path(server, request)
                else:
                    upload = await uploads.receive(request, folder, settings)
                    path, filename = upload.path, upload.filename
                # Known by content and measured from the header (packets counted where the header
                # has no frame count) off the event loop, before a worker decodes anything.
                await anyio.to_thread.run_sync(uploads.check_limits, path, settings, filename)
                work = functools.partial(_verify_file, server.anima, path, settings.trust, with_thumbnails)
                try:
                    report, thumbnails = await server.queue.run(work)
                except MediaError as exc:
                    raise Refused(415, str(exc).replace(str(path), filename)) from None
                except BadInput as exc:
                    raise Refused(400, str(exc).replace(str(path), filename)) from None
                except AnimaError as exc:
                    raise Refused(
                        500, f"verification failed: {str(exc).replace(str(path), filename)}"
                    ) from None
    except QueueFull:
        wait = {"Retry-After": str(server.queue.retry_after())}
        raise Refused(503, "busy: the verify queue is full, try again shortly", wait) from None
    return Checked(report, filename, thumbnails)


async def _server_side_path(server: Server, request: Request) -> tuple[Path, str]:
    """``{"path": ...}``: a file under the operator's ``--allow-paths`` folder, for token holders."""
    root = server.settings.allow_paths
    if root is None:
        raise Refused(403, "server-side paths are off on this server (its operator can allow a folder)")
    server.authorized(request, required=True)
    try:
        named = json.loads(await request.body())["path"]
    except (ValueError, KeyError, TypeError):
        raise Refused(400, 'send {"path": "..."} (a path under the allowed folder)') from None
    if not isinstance(named, str) or not named or "\x00" in named:
        raise Refused(400, "path must be a non-empty string")
    base = Path(root).resolve()
    path = (base / named).resolve()  # symlinks resolved: no way out of the folder
    if not path.is_relative_to(base):
        raise Refused(403, "path is outside the allowed folder")
    if not path.is_file():
        raise Refused(404, "no such file under the allowed folder")
    return path, named  # judged by its content next, as an upload is


def _durable_id(server: Server, report: VerifyReport) -> str | None:
    if report.ledger is None:
        return None
    row = server.anima.ledger.stamp(report.ledger.stamp_id)
    return views.manifest_id(row) if row is not None else None


# ------------------------------------------------------------------ the page


def _page_routes(app: FastAPI, server: Server) -> None:
    def render(name: str, status: int = 200, **values: Any) -> HTMLResponse:
        values.setdefault("max_upload_mb", server.settings.max_upload_bytes / (1 << 20))
        values.setdefault("read_kinds", media.READ_KINDS)
        values.setdefault("accept", ACCEPT)
        return HTMLResponse(server.pages.get_template(name).render(**values), status_code=status)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return render("index.html.j2")

    @app.post("/verify", response_class=HTMLResponse, include_in_schema=False)
    async def verify_page(request: Request) -> HTMLResponse:
        try:
            checked = await _check(server, request, with_thumbnails=True)
        except Refused as exc:
            return render("index.html.j2", status=exc.status, error=exc.detail)
        report = checked.report
        document = views.report_document(
            report,
            checked.filename,
            authorized=False,
            durable_public=server.settings.public_manifests,
            manifest_id=_durable_id(server, report),
        )
        detector = report.detector
        return render(
            "result.html.j2",
            report=document,
            verdict=str(report.verdict),
            verdict_word=VERDICT_WORDS[report.verdict],
            thumbnails=checked.thumbnails,
            plot=views.score_plot(detector.frame_scores, detector.threshold) if detector else None,
            durable=views.store_summary(document["durable_manifest"]),
        )

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    async def docs() -> HTMLResponse:
        schema = app.openapi()
        endpoints = [
            {
                "method": method.upper(),
                "path": path,
                "summary": operation.get("summary", ""),
                "description": operation.get("description", ""),
                "parameters": operation.get("parameters", []),
                "body": sorted((operation.get("requestBody") or {}).get("content", {})),
                "responses": sorted(operation.get("responses", {}).items()),
            }
            for path, methods in schema["paths"].items()
            for method, operation in methods.items()
        ]
        return render("docs.html.j2", endpoints=endpoints, version=__version__)


# What the page's file picker offers: every kind ``Anima.verify`` reads, by type and by suffix
# (browsers know some of these types under other names); the server judges by content anyway.
ACCEPT = ",".join(
    sorted(media.STILL_TYPES | media.ANIMATION_TYPES | media.VIDEO_TYPES) + sorted(media.READ_SUFFIXES)
)

VERDICT_WORDS = {
    Verdict.ANIMA_GENERATED: "Made with Anima",
    Verdict.AI_DECLARED: "Declared AI-generated",
    Verdict.TAMPERED: "Tampered",
    Verdict.LIKELY_SYNTHETIC: "Likely synthetic",
    Verdict.NO_EVIDENCE: "No evidence",
}


# ------------------------------------------------------------------ REST


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    words = {
        400: "Bad request",
        401: "Bearer token missing or wrong",
        403: "Not allowed",
        404: "Not found",
        413: "Too large (bytes, pixels or frames)",
        415: "Not media Anima reads (judged by content)",
        429: "Too many requests from this client",
        503: "Verify queue full",
    }
    return {code: {"description": words[code]} for code in codes}


def _rest_routes(app: FastAPI, server: Server) -> None:
    @app.post(
        "/v1/verify",
        summary="Verify an uploaded clip or still",
        description=(
            "The `anima verify --json` document for a multipart upload (field `file`) or a raw "
            '`video/*`/`image/*` body; or, where the operator allows it, `{"path": ...}` under the '
            "allowed folder (with the token). Ledger details need the bearer token."
        ),
        openapi_extra={"requestBody": {**UPLOAD_BODY, "content": {**UPLOAD_BODY["content"], **PATH_BODY}}},
        responses=_responses(400, 401, 403, 404, 413, 415, 429, 503),
    )
    async def verify(request: Request) -> JSONResponse:
        authorized = server.authorized(request)
        checked = await _check(server, request)
        document = views.report_document(
            checked.report,
            checked.filename,
            authorized=authorized,
            durable_public=server.settings.public_manifests,
            manifest_id=_durable_id(server, checked.report),
        )
        return JSONResponse(document)

    @app.get(
        "/v1/stamps/{stamp_id}",
        summary="A ledger row (needs the bearer token)",
        description="Kind, time, output hash, signer and inputs of a stamp, its manifest id and integrity.",
        responses=_responses(400, 401, 404, 429),
    )
    def stamp(stamp_id: str, request: Request) -> dict[str, Any]:
        server.authorized(request, required=True)
        if not STAMP_ID.fullmatch(stamp_id):
            raise Refused(400, "a stamp id looks like anm-0123abcd")
        row = server.anima.ledger.stamp(stamp_id)
        if row is None:
            raise Refused(404, f"no stamp {stamp_id} in this ledger")
        return views.stamp_document(row, server.anima.ledger.row_problem(row))


# ------------------------------------------------------------------ C2PA Soft Binding Resolution API


def _matches(server: Server, row: Stamp | None, max_results: int) -> dict[str, Any]:
    """``c2pa.softBindingQueryResult``: the manifest of an intact ledger row (an exact watermark
    payload is a full-strength match)."""
    if row is None or server.anima.ledger.row_problem(row) is not None:
        return {"matches": []}
    label = views.manifest_id(row)
    matches = [{"manifestId": label, "similarityScore": 100}] if label else []
    return {"matches": matches[:max_results]}


def _payload(alg: str, value: str) -> int:
    if alg not in watermark.ALGORITHMS:
        raise Refused(
            400, f"unsupported soft-binding algorithm (supported: {', '.join(watermark.ALGORITHMS)})"
        )
    try:
        return watermark.payload_from_binding(value)
    except AnimaError as exc:
        raise Refused(400, str(exc)) from None


MaxResults = Annotated[int, Query(alias="maxResults", ge=1, le=MAX_RESULTS)]


def _soft_binding_routes(app: FastAPI, server: Server) -> None:
    def guard(request: Request) -> None:
        if not server.settings.public_manifests:
            server.authorized(request, required=True)

    @app.get(
        "/v1/matches/byBinding",
        summary="Manifest ids for a soft binding (watermark payload)",
        responses=_responses(400, 401, 429),
    )
    def by_binding(alg: str, value: str, request: Request, max_results: MaxResults = 10) -> dict[str, Any]:
        guard(request)
        return _matches(server, server.anima.ledger.stamp_by_payload(_payload(alg, value)), max_results)

    @app.post(
        "/v1/matches/byBinding",
        summary="Manifest ids for a soft binding sent as JSON",
        responses=_responses(400, 401, 413, 429),
    )
    def by_large_binding(
        query: SoftBindingQuery, request: Request, max_results: MaxResults = 10
    ) -> dict[str, Any]:
        guard(request)
        return _matches(
            server, server.anima.ledger.stamp_by_payload(_payload(query.alg, query.value)), max_results
        )

    @app.post(
        "/v1/matches/byContent",
        summary="Manifest ids for an uploaded asset (its watermark is read here)",
        openapi_extra={"requestBody": UPLOAD_BODY},
        responses=_responses(400, 401, 413, 415, 429, 503),
    )
    async def by_content(
        request: Request,
        max_results: MaxResults = 10,
        alg: str | None = None,
        hint_alg: Annotated[str | None, Query(alias="hintAlg")] = None,
        hint_value: Annotated[str | None, Query(alias="hintValue")] = None,
    ) -> dict[str, Any]:
        guard(request)
        if alg is not None and alg not in watermark.ALGORITHMS:
            raise Refused(
                400, f"unsupported soft-binding algorithm (supported: {', '.join(watermark.ALGORITHMS)})"
            )
        if request.headers.get("content-type", "").startswith("application/json"):
            raise Refused(415, "send the asset itself (a video/image body or a multipart upload)")
        report = (await _check(server, request)).report
        payload = report.watermark.payload if report.watermark is not None else None
        if payload is None:
            return {"matches": []}
        return _matches(server, server.anima.ledger.stamp_by_payload(payload), max_results)

    @app.get(
        "/v1/manifests/{manifestId}",
        summary="The manifest store kept for a manifest id (application/c2pa), or its active manifest",
        description=(
            "The signed C2PA manifest store as it was embedded in the output (`application/c2pa`). "
            "With `returnActiveManifest=true`, only the active manifest, as c2pa's JSON reading of the "
            "kept store (`application/json`, consent fields taken out). A row written before the "
            "store's bytes were kept is served as c2pa's JSON reading (`application/json`)."
        ),
        response_class=Response,
        responses={
            200: {"content": {"application/c2pa": {}, "application/json": {}}},
            **_responses(400, 401, 404, 429),
        },
    )
    def manifest(
        request: Request,
        manifest_id: Annotated[str, FastAPIPath(alias="manifestId")],
        return_active_manifest: Annotated[
            bool,
            Query(
                alias="returnActiveManifest",
                description="true: only the active manifest, as JSON; false (default): the whole store",
            ),
        ] = False,
    ) -> Response:
        guard(request)
        if not MANIFEST_ID.fullmatch(manifest_id):
            raise Refused(400, "a manifest id looks like urn:c2pa:<uuid>")
        row = server.anima.ledger.stamp_by_manifest(manifest_id)
        if row is None:
            raise Refused(404, "no such manifest in this ledger")
        if server.anima.ledger.row_problem(row) is not None:
            raise Refused(404, "this manifest's ledger row fails its integrity check; not served")
        if return_active_manifest:
            # The row's reading of the store it kept (checked by row_problem above): its active
            # manifest is the one manifest_id names, since that is how the row was found.
            active = views.active_manifest(row.manifest or {})
            if active is None:
                raise Refused(404, "this manifest's store names no active manifest")
            return JSONResponse(active)
        store = manifest_store_bytes(row)
        if store is None:
            return JSONResponse(views.redacted_store(row.manifest))
        disposition = f'attachment; filename="{row.id}.c2pa"'
        return Response(store, media_type="application/c2pa", headers={"Content-Disposition": disposition})

    @app.get(
        "/v1/services/supportedAlgorithms",
        summary="The soft-binding algorithms this service resolves",
        responses=_responses(429),
    )
    def supported_algorithms() -> dict[str, Any]:
        return {"watermarks": [{"alg": alg} for alg in watermark.ALGORITHMS]}


def run(anima: Anima, settings: ServeSettings, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve with uvicorn until interrupted (no proxy headers trusted: the client is the socket's peer)."""
    import uvicorn

    uvicorn.run(
        create_app(anima, settings),
        host=host,
        port=port,
        proxy_headers=False,
        server_header=False,
        log_level="info",
        limit_concurrency=max(64, 4 * settings.capacity),
        timeout_keep_alive=5,
    )
