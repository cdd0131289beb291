"""The resource server without a web framework: the verifier, key sets, introspection, the caches,
the store protocol, the request context and result, and the observer hook.

May import :mod:`..settings`, :mod:`..principal`, :mod:`..errors`, :mod:`.._idp` and :mod:`.._jose`;
never Starlette or FastAPI (that is :mod:`..asgi`) nor the calling side (:mod:`..client`).
"""
