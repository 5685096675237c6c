"""Sealed-ufrag keys through the control API (operator only): the relay's steer_seal_keys.

    GET    /v1/keys        the valid key ids and fingerprints (never the key bytes)
    POST   /v1/keys        {"id": 0-15, "key": "<32 hex>"}: make a key valid
    DELETE /v1/keys/{id}   retire a key: ufrags sealed with it are dropped from now on

At most MAX_VALID_KEYS are valid at once (the one transceivers mint with and the one
before it); a third is refused (409) until one is retired. Re-posting a valid id with the
same key is a no-op; with another key it is refused (409): retire the id first, so a typo
never silently turns live sessions' ufrags into forgeries. The keys live only in the
pinned map, so they survive a daemon restart with the rest of the data plane; docs/fleet.md
has the rotation procedure.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from pyctl.daemon.control import ControlError
from steer_common import seal


def seal_table(maps: Any) -> Any:
    """steer_seal_keys of the data plane `maps` (a RouteMaps) was built from."""
    return maps.vip_map.bpf[b"steer_seal_keys"]


def key_view(k: seal.SealKey) -> dict[str, Any]:
    return {"id": k.id, "fingerprint": k.fingerprint()}


def list_keys(table: Any) -> list[dict[str, Any]]:
    return [key_view(k) for k in seal.valid_keys(table)]


def add_key(table: Any, body: Any) -> tuple[int, dict[str, Any]]:
    """(HTTP status, answer) for POST /v1/keys."""
    try:
        key = seal.parse_key(body)
    except seal.KeyFileError as e:
        raise ControlError(400, str(e)) from None
    valid = {k.id: k for k in seal.valid_keys(table)}
    if key.id in valid:
        if valid[key.id].key != key.key:
            raise ControlError(
                409, f"key id {key.id} is valid with another key: retire it first (DELETE)"
            )
        return 200, key_view(key)
    if len(valid) >= seal.MAX_VALID_KEYS:
        raise ControlError(
            409,
            f"{len(valid)} keys are valid already (ids {sorted(valid)}): retire the older "
            "one first",
        )
    seal.install_key(table, key)
    return 201, key_view(key)


def retire(table: Any, key_id_text: str) -> dict[str, Any]:
    try:
        key_id = int(key_id_text)
    except ValueError:
        raise ControlError(400, f"key id must be 0-15, got {key_id_text!r}") from None
    if key_id not in seal.KEY_IDS:
        raise ControlError(400, f"key id must be 0-15, got {key_id}")
    if key_id not in {k.id for k in seal.valid_keys(table)}:
        raise ControlError(404, f"key id {key_id} is not valid")
    seal.retire_key(table, key_id)
    return {"id": key_id, "retired": True}


def add_routes(router: web.UrlDispatcher, ctl_key: Any, body_of: Any) -> None:
    async def get(request: web.Request) -> web.Response:
        return web.json_response({"keys": list_keys(seal_table(request.app[ctl_key].maps))})

    async def post(request: web.Request) -> web.Response:
        status, ans = add_key(seal_table(request.app[ctl_key].maps), await body_of(request))
        return web.json_response(ans, status=status)

    async def delete(request: web.Request) -> web.Response:
        table = seal_table(request.app[ctl_key].maps)
        return web.json_response(retire(table, request.match_info["id"]))

    router.add_get("/v1/keys", get)
    router.add_post("/v1/keys", post)
    router.add_delete("/v1/keys/{id}", delete)
