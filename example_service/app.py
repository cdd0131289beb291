"""Machine B: a small orders API protected by Keycloak-issued machine-to-machine tokens.

- ``GET /health`` is public;
- reads need the scope ``orders:read`` (an optional client scope the caller asks for);
- writes need the client role ``writer`` of *this* API's Keycloak client (``machine-b``);
- cancelling an order also asks Keycloak whether the token is still active (introspection), so a
  revoked token is refused there while it still passes the local-only routes until it expires;
- with ``KC_M2M_METRICS=prometheus``, ``GET /metrics/`` is public, for Prometheus on a private network.

Run it with ``uvicorn example_service.app:create_app --factory``; settings come from ``KC_M2M_*``
(``KC_M2M_INTROSPECTION=per_route`` and ``KC_M2M_CLIENT_SECRET`` for the cancel route).
"""

from __future__ import annotations

import itertools

from fastapi import FastAPI, HTTPException, status
from pydantic import BaseModel

from fastapi_kc_m2m import (
    KeycloakAuth,
    KeycloakAuthMiddleware,
    Principal,
    metrics_app,
    require_active_token,
    require_client_role,
    require_scope,
)

READ_SCOPE = "orders:read"
WRITER_ROLE = "writer"


class NewOrder(BaseModel):
    item: str
    quantity: int = 1


class Order(NewOrder):
    id: int
    placed_by: str
    cancelled: bool = False


def create_app(auth: KeycloakAuth | None = None) -> FastAPI:
    """The orders API, verifying tokens with ``auth`` (default: settings from ``KC_M2M_*``)."""
    auth = auth or KeycloakAuth()
    app = FastAPI(title="orders (Machine B)", lifespan=auth.lifespan)
    public = ["/health", "/docs", "/openapi.json"]
    if auth.settings.metrics == "prometheus":
        app.mount("/metrics", metrics_app())
        public.append("/metrics/")  # scraped without a token: serve it on a private network only
    app.add_middleware(KeycloakAuthMiddleware, auth=auth, exclude_paths=public)
    orders: dict[int, Order] = {}
    ids = itertools.count(1)

    @app.get("/health")
    async def health() -> dict[str, bool]:
        return {"ok": True, "keys_loaded": auth.ready}

    @app.get("/orders", dependencies=[require_scope(READ_SCOPE)])
    async def list_orders(caller: Principal) -> dict[str, object]:
        return {"caller": caller.client_id, "orders": list(orders.values())}

    @app.post("/orders", status_code=status.HTTP_201_CREATED, dependencies=[require_client_role(WRITER_ROLE)])
    async def place_order(new: NewOrder, caller: Principal) -> Order:
        order = Order(id=next(ids), placed_by=caller.client_id, **new.model_dump())
        orders[order.id] = order
        return order

    @app.post("/orders/{order_id}/cancel", dependencies=[require_client_role(WRITER_ROLE), require_active_token()])
    async def cancel_order(order_id: int) -> Order:
        if order_id not in orders:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such order")
        orders[order_id].cancelled = True
        return orders[order_id]

    return app
