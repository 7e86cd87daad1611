"""The browser client (clients/web), served from the gateway's port."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, JSONResponse, Response

WEB_DIR = Path(__file__).resolve().parents[2] / "clients" / "web"


def router() -> APIRouter:
    r = APIRouter(include_in_schema=False)

    @r.get("/")
    async def index() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html")

    @r.get("/{name}")
    async def web_file(name: str) -> Response:
        path = WEB_DIR / name
        if not name.endswith((".js", ".css", ".html")) or not path.is_file():
            return JSONResponse({"error": {"code": "not_found", "message": name}}, status_code=404)
        media = "text/javascript" if name.endswith(".js") else None
        return FileResponse(path, media_type=media)

    return r
