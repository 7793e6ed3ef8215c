"""``anima serve``: the verify page, REST and the C2PA Soft Binding Resolution API over the ledger."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from anima.cli._common import HomeOption, TrustOption, WatermarkKeyOption, open_anima, say
from anima.errors import BadInput


def serve(
    host: Annotated[
        str, typer.Option(help="Address to listen on; the default keeps the server on this machine.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            help="Owner-only file holding the bearer token that unlocks ledger details "
            "(default $ANIMA_HOME/serve.token when it exists; without one they are never served).",
        ),
    ] = None,
    max_upload_mb: Annotated[int, typer.Option(min=1, help="Largest upload in MiB (413 past it).")] = 100,
    max_pixels: Annotated[
        int, typer.Option(min=1, help="Most pixels in one frame or still (413 past it).")
    ] = 4096 * 4096,
    max_frames: Annotated[int, typer.Option(min=1, help="Most frames in a video (413 past it).")] = 18_000,
    rate_limit: Annotated[
        int, typer.Option(min=0, help="Requests a minute from one client address (429 past it); 0: off.")
    ] = 60,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Verifications running at once.")] = 2,
    queue: Annotated[
        int, typer.Option(min=0, help="Verify requests waiting beyond the running ones (503 past it).")
    ] = 8,
    allow_paths: Annotated[
        Path | None,
        typer.Option(help="Let token holders verify files under this folder by path (off by default)."),
    ] = None,
    private_manifests: Annotated[
        bool, typer.Option(help="Answer the Soft Binding Resolution API only with the token.")
    ] = False,
    trust: TrustOption = None,
    watermark_key: WatermarkKeyOption = None,
    home: HomeOption = None,
) -> None:
    """Serve a verify page, REST (/v1/verify, /v1/stamps) and the C2PA Soft Binding Resolution API."""
    try:
        from anima.serve import ServeSettings, load_token, run
    except ModuleNotFoundError as exc:
        missing = f"anima serve needs the serve extra ({exc.name} is missing): pip install 'anima[serve]'"
        raise BadInput(missing) from None
    anima = open_anima(home, watermark_keys=watermark_key or [])
    default_token = anima.settings.home / "serve.token"
    if token_file is None and default_token.exists():
        token_file = default_token
    settings = ServeSettings(
        max_upload_bytes=max_upload_mb << 20,
        max_pixels=max_pixels,
        max_frames=max_frames,
        rate_limit=rate_limit,
        workers=workers,
        queue=queue,
        token=load_token(token_file) if token_file is not None else None,
        allow_paths=allow_paths,
        public_manifests=not private_manifests,
        trust=tuple(trust or ()),
    )
    if not _loopback(host):
        say(f"[yellow]warning:[/] {escape(host)} is reachable from other machines; put TLS in front")
    say(
        f"serving [bold]{escape(str(anima.settings.home))}[/] at http://{escape(host)}:{port}/  "
        f"(ledger details {'need the token' if settings.token else 'are not served: no token'})"
    )
    run(anima, settings, host=host, port=port)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
