"""One replica of a service for tests/system/test_redis_replicas.py, configured by ``KC_M2M_*`` (the Redis
URL included), served by uvicorn in its own process: ``/orders`` (any verified token, DPoP ones too) and
``/active`` (introspected: ``require_active_token``)."""

from __future__ import annotations

from fastapi import Depends, FastAPI

from fastapi_kc_m2m import KeycloakAuthMiddleware, KeycloakResourceServer, Principal, require_active_token

rs = KeycloakResourceServer()
app = FastAPI(lifespan=rs.lifespan)
app.add_middleware(KeycloakAuthMiddleware, auth=rs)


@app.get("/orders")
async def orders(caller: Principal) -> dict[str, str]:
    return {"client": caller.client_id}


@app.get("/active", dependencies=[Depends(require_active_token())])
async def active(caller: Principal) -> dict[str, str]:
    return {"client": caller.client_id}
