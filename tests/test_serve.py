"""``anima serve`` through FastAPI's test client: every endpoint and status code, the safe defaults
(limits, sniffing, private uploads removed however a request ends, the token, the rate limit, the
bounded queue, security headers), and the Soft Binding Resolution API recovering the manifest of a
stamped clip after a CRF-28 re-encode stripped it."""

from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import c2pa
import numpy as np
import pytest

pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'anima[serve]'")

from containers import encode
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from anima import Anima, StampResult, Verdict
from anima.cli import app as cli_app
from anima.config import Settings
from anima.errors import BadInput
from anima.media import READ_KINDS, read_video, write_video
from anima.provenance import watermark
from anima.serve import ServeSettings, create_app, load_token, views
from anima.serve.guards import RateLimiter

TOKEN = "s3cret-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def stamped(studio: Anima, long_clip: Path, still: Path, tmp_path: Path) -> StampResult:
    return studio.stamp(long_clip, tmp_path / "stamped.mp4", reference=still)


@pytest.fixture
def reencoded(stamped: StampResult, tmp_path: Path) -> Path:
    """The stamped clip after an upload site's CRF-28 re-encode: manifest gone, watermark kept."""
    video = read_video(stamped.output)
    path = tmp_path / "reuploaded.mp4"
    write_video(path, video.frames, fps=video.fps, crf=28)
    return path


@pytest.fixture
def serve(studio: Anima, settings: Settings) -> Iterator[Any]:
    """``serve(**limits)``: a test client on a fresh app for the studio (the lifespan runs)."""
    clients: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        options: dict[str, Any] = {"token": TOKEN, "trust": (settings.local_ca_cert,), **overrides}
        client = TestClient(create_app(studio, ServeSettings(**options)))
        clients.append(client)
        return client.__enter__()

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def upload_root(client: TestClient) -> Path:
    return client.app.state.server.upload_root


def post_file(client: TestClient, url: str, path: Path, name: str | None = None, **kwargs: Any) -> Any:
    with open(path, "rb") as handle:
        return client.post(url, files={"file": (name or path.name, handle, "video/mp4")}, **kwargs)


# ------------------------------------------------------------------ the page, docs and headers


def test_page_docs_and_security_headers(serve: Any) -> None:
    client = serve()
    page = client.get("/")
    assert page.status_code == 200 and 'enctype="multipart/form-data"' in page.text
    policy = page.headers["content-security-policy"]
    assert (
        "default-src 'none'" in policy
        and "script-src 'self'" in policy
        and "frame-ancestors 'none'" in policy
    )
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["x-frame-options"] == "DENY" and page.headers["referrer-policy"] == "no-referrer"
    assert "http" not in page.text.split("<body>")[0].replace("http-equiv", "")  # no CDN: local assets only
    for asset in ("/static/anima.css", "/static/anima.js"):
        response = client.get(asset)
        assert response.status_code == 200 and response.headers["x-content-type-options"] == "nosniff"
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/v1/matches/byBinding" in docs.text and "cdn" not in docs.text.lower()
    schema = client.get("/openapi.json").json()
    assert {"/v1/verify", "/v1/stamps/{stamp_id}", "/v1/manifests/{manifestId}"} <= set(schema["paths"])
    missing = client.get("/nothing-here")
    assert missing.status_code == 404 and missing.headers["content-security-policy"] == policy


# ------------------------------------------------------------------ /v1/verify and the page


def test_verify_serves_the_public_report_and_ledger_details_only_with_the_token(
    serve: Any, stamped: StampResult
) -> None:
    client = serve()
    public = post_file(client, "/v1/verify", stamped.output, name="../../etc/clip.mp4")
    assert public.status_code == 200, public.text
    report = public.json()
    assert report["verdict"] == Verdict.ANIMA_GENERATED and report["stamp_id"] == stamped.stamp_id
    assert report["manifest"]["validation_state"] == "Trusted"
    assert report["watermark"]["payload"] == stamped.payload
    assert report["path"] == "clip.mp4"  # the sender's name as a label, never a server path
    assert report["ledger"] == {"stamp_id": stamped.stamp_id, "details": "need the operator's token"}
    assert report["durable_manifest"] is None and report["durable_manifest_id"].startswith("urn:")
    text = public.text
    assert "output_path" not in text and "consent" not in text and str(upload_root(client)) not in text
    full = post_file(client, "/v1/verify", stamped.output, headers=AUTH).json()
    assert full["ledger"]["stamp_id"] == stamped.stamp_id
    assert full["ledger"]["output_sha256"] == stamped.output_sha256
    assert full["ledger"]["inputs"]["reference"]["name"] == "coffee.png"
    wrong = post_file(client, "/v1/verify", stamped.output, headers={"Authorization": "Bearer wrong-token"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"].startswith("Bearer")
    assert list(upload_root(client).iterdir()) == []


def test_verify_page_shows_verdict_signer_and_escapes_names(serve: Any, stamped: StampResult) -> None:
    client = serve()
    page = post_file(client, "/verify", stamped.output, name="<img src=x onerror=alert(1)>.mp4")
    assert page.status_code == 200
    assert 'data-verdict="anima-generated"' in page.text
    assert "Test Studio" in page.text  # the signer, from the manifest
    assert "<img src=x" not in page.text and "&lt;img src=x onerror=alert(1)&gt;.mp4" in page.text
    assert "data:image/jpeg;base64," in page.text and "<polyline" in page.text  # thumbnails, score plot
    refused = client.post(
        "/verify", files={"file": ("notes.mp4", b"just some text, not a video", "video/mp4")}
    )
    assert refused.status_code == 415 and 'role="alert"' in refused.text
    assert list(upload_root(client).iterdir()) == []


def test_raw_body_upload_and_no_evidence(serve: Any, clip: Path) -> None:
    client = serve()
    response = client.post("/v1/verify", content=clip.read_bytes(), headers={"Content-Type": "video/mp4"})
    assert response.status_code == 200, response.text
    assert response.json()["verdict"] in (Verdict.NO_EVIDENCE, Verdict.LIKELY_SYNTHETIC)
    assert response.json()["ledger"] is None


@pytest.mark.parametrize("container", ["webm-vp9", "gif"])
def test_every_kind_verify_reads_gets_a_verdict(
    serve: Any, studio: Anima, astronaut_frames: np.ndarray, tmp_path: Path, container: str
) -> None:
    """What ``Anima.verify`` reads, the server reads (known by content, whatever the declared type),
    and it reaches the same verdict."""
    path = encode(astronaut_frames[:12], tmp_path, container)
    client = serve()
    uploaded = post_file(client, "/v1/verify", path, name="clip.mp4")  # declared video/mp4, named .mp4
    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json()["verdict"] == studio.verify(path).verdict
    raw = client.post("/v1/verify", content=path.read_bytes(), headers={"Content-Type": "video/webm"})
    assert raw.status_code == 200 and raw.json()["verdict"] == uploaded.json()["verdict"]
    page = post_file(client, "/verify", path)
    assert page.status_code == 200 and "data:image/jpeg;base64," in page.text  # thumbnails decoded
    assert list(upload_root(client).iterdir()) == []


def test_a_text_file_is_refused_with_one_clear_line(serve: Any) -> None:
    client = serve()
    notes = ("notes.txt", b"just some text, not a video\n", "text/plain")
    refused = client.post("/v1/verify", files={"file": notes})
    assert refused.status_code == 415
    detail = refused.json()["detail"]
    assert detail == f"notes.txt: not a readable video or picture (its content is not {READ_KINDS})"
    assert str(upload_root(client)) not in detail
    on_the_page = client.post("/verify", files={"file": notes})
    assert on_the_page.status_code == 415 and 'role="alert"' in on_the_page.text
    assert "its content is not MP4, QuickTime, WebM" in on_the_page.text
    assert list(upload_root(client).iterdir()) == []


def test_the_page_offers_every_kind_verify_reads(serve: Any) -> None:
    page = serve().get("/").text
    assert READ_KINDS in page
    assert all(kind in page for kind in ("video/webm", "image/gif", "image/webp", ".mkv", ".avi"))


# ------------------------------------------------------------------ the Soft Binding Resolution API


def test_soft_binding_api_recovers_the_manifest_after_a_crf28_reencode(
    serve: Any, stamped: StampResult, reencoded: Path
) -> None:
    client = serve()
    algorithms = client.get("/v1/services/supportedAlgorithms").json()
    assert {"alg": watermark.ALGORITHM} in algorithms["watermarks"]

    by_content = client.post(
        "/v1/matches/byContent", content=reencoded.read_bytes(), headers={"Content-Type": "video/mp4"}
    )
    assert by_content.status_code == 200, by_content.text
    matches = by_content.json()["matches"]
    assert len(matches) == 1 and matches[0]["similarityScore"] == 100
    manifest_id = matches[0]["manifestId"]

    value = watermark.binding_value(stamped.payload)
    by_binding = client.get("/v1/matches/byBinding", params={"alg": watermark.ALGORITHM, "value": value})
    assert by_binding.json() == {"matches": [{"manifestId": manifest_id, "similarityScore": 100}]}
    posted = client.post("/v1/matches/byBinding", json={"alg": watermark.ALGORITHM, "value": value})
    assert posted.json() == by_binding.json()

    store = client.get(f"/v1/manifests/{manifest_id}")
    assert store.status_code == 200 and store.headers["content-type"] == "application/c2pa"
    with c2pa.Reader("application/c2pa", io.BytesIO(store.content)) as reader:
        recovered = json.loads(reader.json())
    assert recovered["active_manifest"] == manifest_id
    active = recovered["manifests"][manifest_id]
    stamp_assertion = next(a["data"] for a in active["assertions"] if a["label"] == "org.anima.stamp")
    assert stamp_assertion["stamp_id"] == stamped.stamp_id
    with open(stamped.output, "rb") as handle:  # the very bytes the output carried when published
        assert store.content in handle.read()

    report = post_file(client, "/v1/verify", reencoded).json()  # the person's view of the same story
    assert not report["manifest"]["present"] and report["verdict"] == Verdict.ANIMA_GENERATED
    assert report["durable_manifest_id"] == manifest_id
    assert report["durable_manifest"]["active_manifest"] == manifest_id


def test_soft_binding_api_refuses_bad_queries(serve: Any, studio: Anima) -> None:
    client = serve()
    good_value = watermark.binding_value(12345)
    cases = [
        ({"alg": "com.example.other.1", "value": good_value}, 400),
        ({"alg": watermark.ALGORITHM, "value": "not base64!"}, 400),
        ({"alg": watermark.ALGORITHM, "value": "AAAAAAAA"}, 400),  # 6 bytes, not 4
        ({"alg": watermark.ALGORITHM}, 400),
        ({"alg": watermark.ALGORITHM, "value": good_value, "maxResults": 0}, 400),
    ]
    for params, status in cases:
        assert client.get("/v1/matches/byBinding", params=params).status_code == status, params
    unknown = client.get("/v1/matches/byBinding", params={"alg": watermark.ALGORITHM, "value": good_value})
    assert unknown.status_code == 200 and unknown.json() == {"matches": []}
    assert client.post("/v1/matches/byBinding", json={"alg": watermark.ALGORITHM}).status_code == 400
    assert client.get("/v1/manifests/not-a-manifest-id").status_code == 400
    assert client.get("/v1/manifests/urn:c2pa:00000000-0000-0000-0000-000000000000").status_code == 404
    odd_alg = client.post("/v1/matches/byContent", params={"alg": "x.y.1"}, content=b"\x00")
    assert odd_alg.status_code == 400
    as_json = client.post("/v1/matches/byContent", json={"path": "x"})
    assert as_json.status_code == 415


def test_return_active_manifest_serves_the_active_manifest_as_json(
    serve: Any, studio: Anima, still: Path, tmp_path: Path
) -> None:
    result = studio.stamp(still, tmp_path / "marked.png")
    client = serve()
    manifest_id = studio.ledger.stamp(result.stamp_id).manifest["active_manifest"]
    whole = client.get(f"/v1/manifests/{manifest_id}", params={"returnActiveManifest": "false"})
    assert whole.status_code == 200 and whole.headers["content-type"] == "application/c2pa"
    with c2pa.Reader("application/c2pa", io.BytesIO(whole.content)) as reader:
        store = json.loads(reader.json())

    active = client.get(f"/v1/manifests/{manifest_id}", params={"returnActiveManifest": "true"})
    assert active.status_code == 200 and active.headers["content-type"] == "application/json"
    manifest = active.json()
    assert "manifests" not in manifest and "active_manifest" not in manifest  # the manifest, not the store
    expected = store["manifests"][manifest_id]
    assert (
        manifest["label"] == manifest_id
        and manifest["claim_generator_info"] == expected["claim_generator_info"]
    )
    stamp_assertion = next(a["data"] for a in manifest["assertions"] if a["label"] == "org.anima.stamp")
    assert stamp_assertion["stamp_id"] == result.stamp_id
    assert [a["label"] for a in manifest["assertions"]] == [a["label"] for a in expected["assertions"]]

    bad = client.get(f"/v1/manifests/{manifest_id}", params={"returnActiveManifest": "maybe"})
    assert bad.status_code == 400 and "returnActiveManifest" in bad.json()["detail"]
    private = serve(public_manifests=False)
    url = f"/v1/manifests/{manifest_id}?returnActiveManifest=true"
    assert private.get(url).status_code == 401
    assert private.get(url, headers=AUTH).json() == manifest


def test_private_manifests_need_the_token(serve: Any) -> None:
    client = serve(public_manifests=False)
    params = {"alg": watermark.ALGORITHM, "value": watermark.binding_value(7)}
    assert client.get("/v1/matches/byBinding", params=params).status_code == 401
    assert client.get("/v1/matches/byBinding", params=params, headers=AUTH).status_code == 200
    assert client.get("/v1/services/supportedAlgorithms").status_code == 200


# ------------------------------------------------------------------ /v1/stamps


def test_stamps_need_the_token_and_never_show_private_details(serve: Any, stamped: StampResult) -> None:
    client = serve()
    assert client.get(f"/v1/stamps/{stamped.stamp_id}").status_code == 401
    assert (
        client.get(f"/v1/stamps/{stamped.stamp_id}", headers={"Authorization": "Basic x"}).status_code == 401
    )
    assert client.get("/v1/stamps/anm-nothex!", headers=AUTH).status_code == 400
    assert client.get("/v1/stamps/anm-00000000", headers=AUTH).status_code == 404
    row = client.get(f"/v1/stamps/{stamped.stamp_id}", headers=AUTH)
    assert row.status_code == 200
    body = row.json()
    assert body["stamp_id"] == stamped.stamp_id and body["integrity"] == "ok"
    assert body["output_sha256"] == stamped.output_sha256 and body["manifest_id"].startswith("urn:c2pa:")
    assert "output_path" not in row.text and "c2pa_manifest_store" not in row.text
    no_token_server = serve(token=None)
    assert no_token_server.get(f"/v1/stamps/{stamped.stamp_id}", headers=AUTH).status_code == 401


# ------------------------------------------------------------------ limits, sniffing, private uploads


def test_size_pixel_and_frame_limits_answer_413(serve: Any, clip: Path, still: Path) -> None:
    small = serve(max_upload_bytes=1000)
    declared = post_file(small, "/v1/verify", clip)  # Content-Length says it all: refused before reading
    assert declared.status_code == 413 and "larger than" in declared.json()["detail"]
    on_the_page = post_file(small, "/verify", clip)  # people get a page, not JSON
    assert on_the_page.status_code == 413 and 'role="alert"' in on_the_page.text
    assert on_the_page.headers["content-type"].startswith("text/html")

    def chunks() -> Iterator[bytes]:
        yield from (clip.read_bytes()[i : i + 512] for i in range(0, 4096, 512))

    streamed = small.post("/v1/verify", content=chunks(), headers={"Content-Type": "video/mp4"})
    assert streamed.status_code == 413  # no Content-Length: counted as it streams
    big_json = small.post("/v1/matches/byBinding", content=b"{" + b" " * (70 << 10) + b"}")
    assert big_json.status_code == 413
    pixels = serve(max_pixels=200 * 200)
    assert post_file(pixels, "/v1/verify", still).status_code == 413  # 384 x 256
    frames = serve(max_frames=10)
    assert post_file(frames, "/v1/verify", clip).status_code == 413  # 24 frames
    for client in (small, pixels, frames):
        assert list(upload_root(client).iterdir()) == []


def test_a_picture_whose_header_claims_a_huge_size_answers_413(serve: Any, tmp_path: Path) -> None:
    """Anima's own limits (8192 px a side) refuse it from the header, undecoded: too large, not unreadable."""
    png = io.BytesIO()
    Image.new("RGB", (16, 16)).save(png, format="PNG")
    data = bytearray(png.getvalue())
    data[16:24] = (20_000).to_bytes(4, "big") + (16).to_bytes(4, "big")  # IHDR width, height
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")  # IHDR's CRC over type + fields
    huge = tmp_path / "huge.png"
    huge.write_bytes(bytes(data))
    client = serve()
    answer = post_file(client, "/v1/verify", huge)
    assert answer.status_code == 413 and "huge.png" in answer.json()["detail"]
    assert str(tmp_path) not in answer.json()["detail"]
    assert list(upload_root(client).iterdir()) == []


def test_content_is_sniffed_not_trusted(serve: Any, still: Path, tmp_path: Path) -> None:
    client = serve()
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"<html><script>alert(1)</script></html>" * 10)
    assert post_file(client, "/v1/verify", fake).status_code == 415
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypisom" + os.urandom(2000))
    assert post_file(client, "/v1/verify", broken).status_code == 415
    assert (
        client.post("/v1/verify", content=b"hello", headers={"Content-Type": "text/plain"}).status_code == 415
    )
    no_file = client.post("/v1/verify", data={"other": "field"}, files={"x": ("a.txt", b"abc", "text/plain")})
    assert no_file.status_code == 400
    empty = client.post("/v1/verify", files={"file": ("empty.png", b"", "image/png")})
    assert empty.status_code == 400
    # A PNG named .mp4 is read as the PNG it is.
    with open(still, "rb") as handle:
        renamed = client.post("/v1/verify", files={"file": ("holiday.mp4", handle, "video/mp4")})
    assert renamed.status_code == 200 and renamed.json()["verdict"] in set(Verdict)
    assert list(upload_root(client).iterdir()) == []


def test_upload_is_removed_when_the_client_disconnects_mid_upload(serve: Any, clip: Path) -> None:
    client = serve()
    app, root = client.app, upload_root(client)
    boundary = "anima-test-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode() + clip.read_bytes()[:2048]
    seen_files: list[list[Path]] = []
    messages = [{"type": "http.request", "body": head, "more_body": True}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        seen_files.append([p for p in root.rglob("*") if p.is_file()])  # the partial upload, on disk
        return {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/verify",
        "raw_path": b"/v1/verify",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", f"multipart/form-data; boundary={boundary}".encode())],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }

    async def call() -> None:
        with contextlib.suppress(Exception):  # the server may give up on a vanished client either way
            await app(scope, receive, send)

    anyio.run(call)
    assert seen_files and seen_files[0], "the partial upload should have been on disk before the disconnect"
    assert all(oct(p.parent.stat().st_mode & 0o777) == "0o700" for p in seen_files[0] if p.parent.exists())
    assert list(root.iterdir()) == []


def test_upload_folder_is_private_and_removed_after_a_verify_error(
    serve: Any, studio: Anima, clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = serve()
    seen: list[tuple[Path, int]] = []

    def failing_verify(path: Path, **_: Any) -> Any:
        seen.append((Path(path), Path(path).parent.stat().st_mode & 0o777))
        raise RuntimeError("detector crashed")

    monkeypatch.setattr(studio, "verify", failing_verify)
    with pytest.raises(RuntimeError):
        post_file(client, "/v1/verify", clip)
    ((path, mode),) = seen
    assert mode == 0o700 and not path.exists() and list(upload_root(client).iterdir()) == []
    assert oct(upload_root(client).stat().st_mode & 0o777) == "0o700"


# ------------------------------------------------------------------ rate limit and queue


def test_rate_limit_answers_429_per_client(serve: Any) -> None:
    client = serve(rate_limit=2)
    assert [client.get("/").status_code for _ in range(2)] == [200, 200]
    limited = client.get("/v1/services/supportedAlgorithms")
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert limited.headers["x-content-type-options"] == "nosniff"
    assert client.get("/static/anima.css").status_code == 200  # assets are not counted
    page = client.get("/")
    assert page.status_code == 429 and page.headers["content-type"].startswith("text/html")


def test_rate_limiter_refills_and_forgets_idle_clients() -> None:
    now = [0.0]
    limiter = RateLimiter(60, clock=lambda: now[0])
    assert all(limiter.take("a") == 0.0 for _ in range(60))
    assert limiter.take("a") == pytest.approx(1.0)
    assert limiter.take("b") == 0.0  # per client
    now[0] += 1.0
    assert limiter.take("a") == 0.0


def test_full_verify_queue_answers_503(
    serve: Any, studio: Anima, still: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = serve(workers=1, queue=0)
    started, release = threading.Event(), threading.Event()
    real_verify = studio.verify

    def slow_verify(path: Path, **kwargs: Any) -> Any:
        started.set()
        release.wait(30)
        return real_verify(path, **kwargs)

    monkeypatch.setattr(studio, "verify", slow_verify)
    results: list[int] = []
    first = threading.Thread(
        target=lambda: results.append(post_file(client, "/v1/verify", still).status_code)
    )
    first.start()
    try:
        assert started.wait(30)
        busy = post_file(client, "/v1/verify", still)
        assert busy.status_code == 503 and busy.headers["retry-after"]
        assert client.get("/v1/services/supportedAlgorithms").status_code == 200  # cheap calls go on
    finally:
        release.set()
        first.join(60)
    assert results == [200]
    assert client.app.state.server.queue.held == 0


# ------------------------------------------------------------------ server-side paths


def test_server_side_paths_only_when_enabled_and_with_the_token(
    serve: Any, still: Path, tmp_path: Path
) -> None:
    assert serve().post("/v1/verify", json={"path": str(still)}, headers=AUTH).status_code == 403
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "still.png").write_bytes(still.read_bytes())
    (allowed / "escape.png").symlink_to(still)
    client = serve(allow_paths=allowed)
    assert client.post("/v1/verify", json={"path": "still.png"}).status_code == 401
    assert client.post("/v1/verify", json={"path": "../x.png"}, headers=AUTH).status_code == 403
    assert client.post("/v1/verify", json={"path": "escape.png"}, headers=AUTH).status_code == 403
    assert client.post("/v1/verify", json={"path": "missing.png"}, headers=AUTH).status_code == 404
    assert client.post("/v1/verify", json={"nope": 1}, headers=AUTH).status_code == 400
    good = client.post("/v1/verify", json={"path": "still.png"}, headers=AUTH)
    assert good.status_code == 200 and good.json()["path"] == "still.png"
    (allowed / "notes.txt").write_text("not a video")
    text = client.post("/v1/verify", json={"path": "notes.txt"}, headers=AUTH)
    assert text.status_code == 415 and text.json()["detail"].startswith("notes.txt: not a readable video")
    assert str(allowed) not in text.text


# ------------------------------------------------------------------ settings, token, CLI, layout


def test_token_file_must_be_private_and_long(tmp_path: Path) -> None:
    token = tmp_path / "serve.token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o644)
    with pytest.raises(BadInput, match="readable by others"):
        load_token(token)
    token.chmod(0o600)
    assert load_token(token) == TOKEN
    token.write_text("short")
    with pytest.raises(BadInput, match="at least 16"):
        load_token(token)
    with pytest.raises(BadInput):
        load_token(tmp_path / "missing")
    with pytest.raises(BadInput):
        ServeSettings(workers=0)
    with pytest.raises(BadInput):
        ServeSettings(allow_paths=tmp_path / "nowhere")


def test_cli_serve_refuses_a_readable_token_file_before_listening(settings: Settings, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN)
    token.chmod(0o644)
    result = CliRunner().invoke(cli_app, ["serve", "--home", str(settings.home), "--token-file", str(token)])
    assert result.exit_code == BadInput.exit_code and "readable by others" in result.output
    helped = CliRunner().invoke(cli_app, ["serve", "--help"])
    assert helped.exit_code == 0 and "127.0.0.1" in helped.output


def test_serve_reaches_the_ledger_only_through_the_api_and_core() -> None:
    allowed = {
        "anima",
        "anima.api",
        "anima.errors",
        "anima.ledger",
        "anima.media",
        "anima.provenance.verify",
        "anima.provenance.watermark",
        "anima.provenance.stamp",
        "anima.provenance",
    }
    for path in sorted((ROOT / "anima" / "serve").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                if name.startswith("anima") and not name.startswith("anima.serve"):
                    assert name in allowed, f"{path.name} imports {name}"


def test_default_binds_to_loopback() -> None:
    from anima.cli import serve as serve_command

    assert serve_command._loopback("127.0.0.1") and serve_command._loopback("::1")
    assert not serve_command._loopback("0.0.0.0")
    import inspect

    assert inspect.signature(serve_command.serve).parameters["host"].default == "127.0.0.1"


def test_a_manifest_id_finds_its_stamp_on_every_ledger_backend(
    database_url: str, settings: Settings, still: Path, tmp_path: Path
) -> None:
    """``/v1/manifests/{id}`` looks the id up inside the kept manifest's JSON: SQLite and PostgreSQL."""
    studio = Anima(settings.home, database_url, actor="tester")
    result = studio.stamp(still, tmp_path / "marked.png")
    row = studio.ledger.stamp(result.stamp_id)
    label = row.manifest["active_manifest"]
    assert studio.ledger.stamp_by_manifest(label).id == result.stamp_id
    assert studio.ledger.stamp_by_manifest("urn:c2pa:00000000-0000-0000-0000-000000000000") is None
    with TestClient(create_app(studio, ServeSettings())) as client:
        store = client.get(f"/v1/manifests/{label}")
    assert store.status_code == 200 and store.headers["content-type"] == "application/c2pa"


def test_consent_fields_are_taken_out_of_every_json_answer() -> None:
    anima_data = {"stamp_id": "anm-00000001", "consent": {"grants": ["g-1"], "decision_event": 7}}
    store = {
        "active_manifest": "urn:c2pa:x",
        "manifests": {"urn:c2pa:x": {"assertions": [{"label": "org.anima.stamp", "data": anima_data}]}},
    }
    cleaned = views.redacted_store(store)
    assert cleaned["manifests"]["urn:c2pa:x"]["assertions"][0]["data"] == {"stamp_id": "anm-00000001"}
    assert "consent" in anima_data  # the row's own copy is left alone
    assert views.without_consent(anima_data) == {"stamp_id": "anm-00000001"}
    assert views.without_consent(None) is None
    assert views.active_manifest(store) == {
        "assertions": [{"label": "org.anima.stamp", "data": {"stamp_id": "anm-00000001"}}]
    }
    assert views.active_manifest({"manifests": {}}) is None
