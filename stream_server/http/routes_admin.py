"""``/admin/tiers``: the operator's live tier switch (core/tier_switch.py, hub/tier_operator.py).

    GET  /admin/tiers                                  the switch: configured, order, preferred, disabled
    POST /admin/tiers  {"op": "prefer", "tier": "elevenlabs"}   prefer | disable | enable | reset

Both need the full token (SESAME_AUTH_TOKEN, ``Authorization: Bearer ...``): 401 without it. A
gateway with no token configured refuses them (403 ``admin_needs_token``): nothing here fails open.
A command that cannot be done is a 400 with its code (unknown_op, unknown_tier, last_tier). Each
change is logged, recorded as an ``operator`` incident (``/status``, ``/api/status``) and written to
SESAME_STATE_DIR/tier-switch.json, so that a reloaded or restarted gateway keeps it.
``sesame-voice tiers`` (sesame_voice/tiers.py) is the command line for it.
"""

from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from broker.errors import ProtocolError
from stream_server.http.auth import authorized
from stream_server.http.ports import AdminHost
from stream_server.monitoring.monitor import Monitor


def router(hub: AdminHost, monitor: Monitor | None = None) -> APIRouter:
    r = APIRouter()
    operator = hub.tier_operator

    def refused(request: Request) -> JSONResponse | None:
        token = hub.config.auth_token
        if token is None:
            message = "the admin endpoints need SESAME_AUTH_TOKEN set on the gateway"
            return JSONResponse({"error": {"code": "admin_needs_token", "message": message}}, status_code=403)
        if not authorized(token, request.headers):
            body = {"error": {"code": "unauthorized", "message": "Authorization: Bearer <token> required"}}
            return JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        return None

    @r.get("/admin/tiers")
    async def tiers(request: Request) -> JSONResponse:
        """The operator's tier switch (token required)."""
        return refused(request) or JSONResponse(operator.switch.view())

    @r.post("/admin/tiers")
    async def switch(request: Request) -> JSONResponse:
        """Prefer, disable or re-enable a tier, or reset to the configured order (token required)."""
        if (no := refused(request)) is not None:
            return no
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError) as exc:
            raise ProtocolError("the body is not valid UTF-8 JSON", code="bad_json") from exc
        if not isinstance(body, dict) or not isinstance(body.get("op"), str):
            usage = 'expected {"op": "prefer|disable|enable|reset", "tier": "..."}'
            raise ProtocolError(usage, code="bad_field:op")
        tier = body.get("tier")
        if tier is not None and not isinstance(tier, str):
            raise ProtocolError("tier must be a string", code="bad_field:tier")
        text = operator.apply(body["op"], tier)  # TierSwitchError: a 400 with its code
        await asyncio.to_thread(operator.save)
        if monitor is not None:
            monitor.operator(tier or "tiers", text)
        return JSONResponse({"changed": text, **operator.switch.view()})

    return r
