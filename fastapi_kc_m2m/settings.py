"""Settings of the resource server, read from ``KC_M2M_*`` environment variables or keyword arguments.

Every default follows ``resource-server.md``; invalid combinations fail at start-up with a message
naming the variable to fix.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import ssl
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ._idp.client_auth import ClientAuthMethod
from ._idp.http import HttpLimits, trust_context
from ._idp.urls import check_http_url, is_cleartext_over_network
from ._jose.algorithms import ASSERTION_ALGORITHMS, SUPPORTED_ALGORITHMS
from ._jose.strictjson import loads_object

__all__ = ["SUPPORTED_ALGORITHMS", "IntrospectionPolicy", "KeycloakSettings", "SettingsError"]

_PREFIX = "KC_M2M_"
_CA_FILE = "KC_M2M_CA_FILE"
_REALM_URL = re.compile(r"/realms/[^/]+$")
#: A realm name as an issuer may carry it, and a ``KC_M2M_REALMS`` glob pattern (``*`` and ``?`` only):
#: ASCII letters, digits, ``.``, ``_``, ``-``; never ``/``, ``%``, ``..``, a lone ``.`` (a dot segment a URL
#: client would remove) or a Unicode look-alike.
_REALM_NAME = re.compile(r"(?!.*\.\.)(?!\.$)[A-Za-z0-9._-]{1,255}")
_REALM_PATTERN = re.compile(r"(?!.*\.\.)[A-Za-z0-9._*?-]{1,255}")

#: When tokens are introspected (RFC 7662): never, for every request, or on routes that ask for it.
IntrospectionPolicy = Literal["off", "always", "per_route"]
#: DPoP-bound tokens (RFC 9449): refused, accepted with a valid proof beside Bearer tokens, or the only kind.
DPoPPolicy = Literal["off", "allowed", "required"]
#: How a TLS-terminating proxy forwards the client certificate (RFC 8705 §3): nginx's
#: ``$ssl_client_escaped_cert``, RFC 9440 ``Client-Cert``, or Envoy's ``x-forwarded-client-cert``.
ClientCertFormat = Literal["pem-urlencoded", "rfc9440", "xfcc"]
#: Resource-server metrics: none, or Prometheus families (:mod:`.server.metrics`).
MetricsPolicy = Literal["off", "prometheus"]
#: Spans around key-set fetches and introspection calls: none, or OpenTelemetry's (the ``[otel]`` extra).
TracingPolicy = Literal["off", "otel"]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_CommaList = Annotated[tuple[str, ...], NoDecode]
_Networks = Annotated[tuple[IPNetwork, ...], NoDecode]
#: An HTTP field name (RFC 9110 §5.1), lower-case as ASGI delivers it.
_HEADER_NAME = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+")
#: A JSON object in the environment, parsed by the field's validator so its errors name the variable.
_JsonMap = Annotated[dict[str, str], NoDecode]


class SettingsError(ValueError):
    """Invalid settings: ``str()`` is one line per problem, each naming the ``KC_M2M_*`` variable to fix."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


def _split(value: Any) -> Any:
    """Accept ``a,b`` as well as a sequence, so environment variables stay readable."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


def _variable(field: str) -> str:
    return f"{_PREFIX}{field.upper()}"


def _unknown_variables(environ: Mapping[str, str], fields: Iterable[str]) -> list[str]:
    """A problem for every ``KC_M2M_*`` variable that names no setting, with the closest valid one."""
    known = [_variable(field) for field in fields]
    problems = []
    for name in sorted(name.upper() for name in environ if name.upper().startswith(_PREFIX)):
        if name not in known:
            # Compared without the shared prefix, which would make every name look close.
            suffixes = [variable.removeprefix(_PREFIX) for variable in known]
            close = difflib.get_close_matches(name.removeprefix(_PREFIX), suffixes, n=1)
            hint = f"did you mean {_PREFIX}{close[0]}?" if close else "unset it"
            problems.append(f"{name} is not a setting: {hint}")
    return problems


def _describe(error: ErrorDetails, descriptions: Mapping[str, str | None]) -> str:
    """One line for one validation error, naming the variable (never the input: it may be a secret)."""
    message = error["msg"].removeprefix("Value error, ")
    field = str(error["loc"][0]) if error["loc"] else ""
    if not field or _PREFIX in message:
        return message
    return f"fix {_variable(field)} ({descriptions.get(field) or field}): {message}"


class KeycloakSettings(BaseSettings):
    """What the resource server trusts and how it talks to Keycloak.

    Trusted issuers are ``<server_url>/realms/<realm>`` (or ``<server_url>/realms/<name>`` for each name
    ``realms`` lists or one of its patterns matches) and/or every entry of ``issuers``; each has its own
    key set, chosen by the token's ``iss``.
    """

    # Inputs stay out of error messages: they may hold the client secret or private key.
    model_config = SettingsConfigDict(env_prefix="KC_M2M_", frozen=True, extra="forbid", hide_input_in_errors=True)

    server_url: str | None = Field(
        default=None,
        description="Keycloak base URL, e.g. http://keycloak:8080; with realm the issuer is <url>/realms/<realm>",
    )
    realm: str | None = Field(default=None, description="Realm on server_url whose tokens are trusted")
    realms: _CommaList = Field(
        default=(), description="Instead of realm: realm names and glob patterns (tenant-*) on server_url"
    )
    audiences: _JsonMap = Field(
        default_factory=dict, description="JSON object realm or pattern -> this API's client id in that realm"
    )
    max_realms: int = Field(default=1000, ge=1, description="Pattern-matched realms whose keys are held at once (LRU)")
    realm_negative_ttl: float = Field(
        default=300.0, gt=0, description="Seconds a realm Keycloak does not know (404) is refused without asking"
    )
    realm_lookups_per_minute: int = Field(
        default=60, ge=1, description="New pattern-matched realms looked up at Keycloak per minute, at most"
    )
    issuers: _CommaList = Field(
        default=(),
        description="Further trusted issuers, comma-separated (several realms or servers; each gets its own key set)",
    )
    jwks_uris: _JsonMap = Field(default_factory=dict, description="JSON object issuer -> jwks_uri, skipping discovery")
    audience: str = Field(
        description="This API's client id; tokens must carry it in aud (account is refused as a setting)"
    )
    allowed_clients: _CommaList = Field(default=(), description="Calling client ids (azp) allowed; empty: any")
    algorithms: _CommaList = Field(
        default=("RS256",), description="Accepted JWS algorithms: RS/PS/ES 256/384/512, EdDSA (never HS* or none)"
    )
    clock_skew: float = Field(default=60.0, ge=0, le=300, description="Seconds of leeway for exp, nbf and iat")
    max_token_bytes: int = Field(
        default=16384, ge=1024, le=1 << 20, description="Longer tokens are refused before any decoding"
    )
    jwks_ttl: float = Field(default=300.0, gt=0, description="Seconds a fetched key set counts as fresh")
    jwks_refresh_ahead: float = Field(default=30.0, ge=0, description="Refresh this long before the TTL ends")
    jwks_refetch_cooldown: float = Field(
        default=30.0, ge=0, description="Minimum seconds between unknown-kid refetches"
    )
    jwks_max_stale: float = Field(
        default=3600.0, gt=0, description="How long the last good key set serves in an outage"
    )
    jwks_retry_interval: float = Field(
        default=5.0,
        gt=0,
        description="Seconds between fetch attempts after a failure; the Retry-After of key-set and introspection 503s",
    )
    http_connect_timeout: float = Field(default=2.0, gt=0, description="Connect timeout towards Keycloak")
    http_timeout: float = Field(default=5.0, gt=0, description="Total time one request to Keycloak may take")
    http_max_body: int = Field(default=65536, ge=1024, description="Largest response body accepted from Keycloak")
    token_cache_size: int = Field(default=10000, ge=0, description="Verified tokens remembered; 0 disables")
    token_cache_ttl: float = Field(default=300.0, ge=0, description="Upper bound on a remembered token's life")
    introspection: IntrospectionPolicy = Field(
        default="off", description="Token introspection: off, always, or per_route (routes using require_active_token)"
    )
    client_id: str | None = Field(
        default=None, description="This API's own Keycloak client for introspection; default: audience"
    )
    client_secret: SecretStr | None = Field(
        default=None,
        description="Its secret (client_secret_basic, client_secret_post); never shown in repr, logs or errors",
    )
    client_auth_method: ClientAuthMethod = Field(
        default="client_secret_basic",
        description="How it authenticates: client_secret_basic, client_secret_post or private_key_jwt",
    )
    client_private_key: SecretStr | None = Field(
        default=None, description="For private_key_jwt: path to a PEM private key file, or a private JWK as JSON"
    )
    client_key_id: str | None = Field(default=None, description="kid of the client assertion; default: the JWK's kid")
    client_assertion_alg: str = Field(
        default="RS256", description="Signing algorithm of the client assertion: RS/PS/ES 256/384/512"
    )
    introspection_endpoints: _JsonMap = Field(
        default_factory=dict, description="JSON object issuer -> introspection endpoint, skipping discovery"
    )
    introspection_cache_ttl: float = Field(
        default=30.0,
        ge=0,
        description="Seconds an introspection answer is reused: how long a revoked token stays usable",
    )
    introspection_cache_size: int = Field(
        default=10000, ge=0, description="Introspection answers remembered; 0 disables"
    )
    introspection_timeout: float = Field(default=3.0, gt=0, description="Total time one introspection call may take")
    token_exchange: bool = Field(
        default=False,
        description="Exchange callers' tokens for downstream calls (RFC 8693) as the client of KC_M2M_CLIENT_ID",
    )
    token_endpoints: _JsonMap = Field(
        default_factory=dict, description="JSON object issuer -> token endpoint for token exchange, skipping discovery"
    )
    token_exchange_cache_size: int = Field(
        default=1000, ge=0, description="Exchanged tokens remembered (per caller token, audience, scope); 0 disables"
    )
    lightweight_tokens: bool = Field(
        default=False, description="Accept tokens without aud, taking aud and roles from the introspection answer"
    )
    dpop: DPoPPolicy = Field(
        default="allowed",
        description="DPoP-bound tokens (RFC 9449): off (refused), allowed (beside Bearer), or required (only them)",
    )
    dpop_algorithms: _CommaList = Field(
        default=tuple(sorted(SUPPORTED_ALGORITHMS)),
        description="Accepted DPoP proof algorithms, comma-separated: RS/PS/ES 256/384/512, EdDSA; default: all",
    )
    dpop_max_age: float = Field(
        default=60.0, gt=0, le=300, description="Seconds a proof's iat may lie in the past (clock skew and latency)"
    )
    dpop_max_ahead: float = Field(
        default=15.0, ge=0, le=60, description="Seconds a proof's iat may lie in the future (a caller's fast clock)"
    )
    public_url: str | None = Field(
        default=None,
        description="This API's public base URL for DPoP htu behind proxies; default: request scheme, Host, root path",
    )
    dpop_nonce: bool = Field(default=False, description="Demand server nonces in DPoP proofs (RFC 9449 §9)")
    dpop_nonce_secret: SecretStr | None = Field(
        default=None,
        description="Nonce MAC key, at least 32 characters, the same on every replica; needed with KC_M2M_DPOP_NONCE",
    )
    dpop_nonce_lifetime: float = Field(
        default=60.0, ge=5, le=3600, description="Seconds a nonce's time slot lasts; the current and previous count"
    )
    redis_url: SecretStr | None = Field(
        default=None,
        description="Redis shared by the replicas for DPoP replay and introspection answers: redis://, rediss://, unix://",
    )
    redis_key_prefix: str = Field(
        default="kc-m2m:", pattern=r"^[!-~]{1,64}$", description="Prefix of this service's keys in that Redis"
    )
    redis_timeout: float = Field(
        default=0.25, gt=0, le=5, description="Seconds one Redis command may take; then Redis counts as down"
    )
    tracing: TracingPolicy = Field(
        default="off", description="Spans around key-set fetches and introspection calls: off, or otel (OpenTelemetry)"
    )
    client_cert_header: str | None = Field(
        default=None, description="Header a TLS-terminating proxy puts the client certificate in, lower-case"
    )
    client_cert_format: ClientCertFormat | None = Field(
        default=None, description="Its format: pem-urlencoded (nginx), rfc9440 (Client-Cert) or xfcc (Envoy)"
    )
    trusted_proxies: _Networks = Field(
        default=(), description="Addresses and CIDR ranges of the proxies whose certificate header is trusted"
    )
    allow_http: bool = Field(
        default=False, description="Allow http:// Keycloak URLs to hosts other than loopback (tokens in clear)"
    )
    metrics: MetricsPolicy = Field(
        default="off", description="Resource-server metrics: off, or prometheus (the prometheus extra)"
    )
    ca_file: str | None = Field(
        default=None,
        description="PEM file of the CA certificates Keycloak's HTTPS certificate must chain to; default: system store",
    )

    if not TYPE_CHECKING:  # type checkers keep the generated keyword signature

        def __init__(self, **values: Any) -> None:
            """Validate every source; raise :class:`SettingsError` listing each problem."""
            problems = _unknown_variables(os.environ, type(self).model_fields)
            try:
                super().__init__(**values)
            except ValidationError as exc:
                fields = type(self).model_fields.items()
                descriptions = {name: field.description for name, field in fields}
                problems += [_describe(error, descriptions) for error in exc.errors()]
            if problems:
                raise SettingsError(problems) from None

    @model_validator(mode="before")
    @classmethod
    def _require_audience(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("audience"):
            raise ValueError(
                "set KC_M2M_AUDIENCE (or audience=) to this API's Keycloak client id; tokens must name it"
                " in 'aud' (add an audience mapper in Keycloak)"
            )
        return data

    @field_validator("realms", "issuers", "allowed_clients", "algorithms", "dpop_algorithms", mode="before")
    @classmethod
    def _split_lists(cls, value: Any) -> Any:
        return _split(value)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _parse_networks(cls, value: Any) -> Any:
        try:
            return tuple(ipaddress.ip_network(item, strict=False) for item in _split(value))
        except (TypeError, ValueError):
            raise ValueError("KC_M2M_TRUSTED_PROXIES must list IP addresses and CIDR ranges, comma-separated") from None

    @field_validator("ca_file")
    @classmethod
    def _check_ca_file(cls, value: str | None) -> str | None:
        if value is not None:
            trust_context(value, _CA_FILE)
        return value

    @field_validator("client_cert_header")
    @classmethod
    def _check_header_name(cls, value: str | None) -> str | None:
        if value is not None and not _HEADER_NAME.fullmatch(value):
            raise ValueError("KC_M2M_CLIENT_CERT_HEADER must be a lower-case header name, e.g. ssl-client-cert")
        return value

    @field_validator("jwks_uris", "introspection_endpoints", "token_endpoints", "audiences", mode="before")
    @classmethod
    def _parse_json_maps(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return loads_object(value.encode())
        except ValueError:
            variable = _variable(str(info.field_name))
            raise ValueError(f'{variable} must be a JSON object: {{"<issuer>": "<URL>", ...}}') from None

    @field_validator("server_url")
    @classmethod
    def _check_server_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        url = check_http_url(value.rstrip("/"), "KC_M2M_SERVER_URL")
        if _REALM_URL.search(url):
            raise ValueError(
                "KC_M2M_SERVER_URL must be Keycloak's base URL (e.g. http://keycloak:8080), not a realm URL:"
                " set KC_M2M_SERVER_URL to the base URL and KC_M2M_REALM to the realm, or list the realm URL"
                " in KC_M2M_ISSUERS instead"
            )
        return url

    @field_validator("realm", "audience")
    @classmethod
    def _refuse_padding(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and value != value.strip():
            raise ValueError(f"{_variable(str(info.field_name))} must not start or end with spaces: remove them")
        return value

    @field_validator("realms")
    @classmethod
    def _check_realms(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not all(_REALM_PATTERN.fullmatch(realm) for realm in value):
            raise ValueError(_PATTERN_RULE.format("each of KC_M2M_REALMS"))
        return value

    @field_validator("audiences")
    @classmethod
    def _check_audiences(cls, value: dict[str, str]) -> dict[str, str]:
        if not all(_REALM_PATTERN.fullmatch(realm) for realm in value):
            raise ValueError(_PATTERN_RULE.format("each key of KC_M2M_AUDIENCES"))
        for audience in value.values():
            _checked_audience(audience, "each audience of KC_M2M_AUDIENCES")
        return value

    @field_validator("issuers")
    @classmethod
    def _check_issuers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(check_http_url(issuer, "each of KC_M2M_ISSUERS") for issuer in value)

    @field_validator("jwks_uris", "introspection_endpoints", "token_endpoints")
    @classmethod
    def _check_endpoint_urls(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        for uri in value.values():
            check_http_url(uri, f"each URL in KC_M2M_{str(info.field_name).upper()}")
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        """The URL may hold a password: the message never shows it."""
        if value is not None and urlsplit(value.get_secret_value()).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("KC_M2M_REDIS_URL must start with redis://, rediss:// (TLS) or unix://")
        return value

    @field_validator("client_assertion_alg")
    @classmethod
    def _check_assertion_alg(cls, value: str) -> str:
        if value not in ASSERTION_ALGORITHMS:
            raise ValueError(f"KC_M2M_CLIENT_ASSERTION_ALG must be one of {sorted(ASSERTION_ALGORITHMS)}")
        return value

    @field_validator("audience")
    @classmethod
    def _check_audience(cls, value: str) -> str:
        return _checked_audience(value, "KC_M2M_AUDIENCE")

    @field_validator("algorithms")
    @classmethod
    def _check_algorithms(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - SUPPORTED_ALGORITHMS)
        if unknown or not value:
            raise ValueError(
                f"KC_M2M_ALGORITHMS must be a non-empty subset of {sorted(SUPPORTED_ALGORITHMS)};"
                f" not allowed: {unknown}"
            )
        return value

    @model_validator(mode="after")
    def _check_consistency(self) -> KeycloakSettings:
        if not self.trusted_issuers and not self.realms:
            raise ValueError("set KC_M2M_SERVER_URL and KC_M2M_REALM, or KC_M2M_ISSUERS: no issuer is trusted")
        self._check_realm_choice()
        for variable, mapping in (
            ("KC_M2M_JWKS_URIS", self.jwks_uris),
            ("KC_M2M_INTROSPECTION_ENDPOINTS", self.introspection_endpoints),
            ("KC_M2M_TOKEN_ENDPOINTS", self.token_endpoints),
        ):
            stray = sorted(set(mapping) - set(self.trusted_issuers))
            if stray:
                raise ValueError(f"{variable} names issuers that are not trusted: {stray}")
        if self.jwks_refresh_ahead >= self.jwks_ttl:
            raise ValueError("KC_M2M_JWKS_REFRESH_AHEAD must be shorter than KC_M2M_JWKS_TTL")
        if self.jwks_max_stale < self.jwks_ttl:
            raise ValueError("KC_M2M_JWKS_MAX_STALE must be at least KC_M2M_JWKS_TTL")
        if self.introspects or self.token_exchange:
            self._check_client_credentials()
        self._check_dpop()
        self._check_client_cert_source()
        self._check_cleartext()
        return self

    def _check_realm_choice(self) -> None:
        """One realm (``KC_M2M_REALM``) or a list of them (``KC_M2M_REALMS``), either with ``KC_M2M_SERVER_URL``."""
        if self.realm is not None and self.realms:
            raise ValueError("KC_M2M_REALM and KC_M2M_REALMS exclude each other: list every realm in KC_M2M_REALMS")
        if self.realms and self.server_url is None:
            raise ValueError("KC_M2M_REALMS needs KC_M2M_SERVER_URL, the Keycloak base URL the realms are on")
        if (self.server_url is None) != (self.realm is None) and not self.realms:
            raise ValueError("KC_M2M_SERVER_URL and KC_M2M_REALM go together: set both or neither")

    def _check_cleartext(self) -> None:
        """No token or client secret crosses a network in clear unless ``KC_M2M_ALLOW_HTTP`` says so."""
        base = (self.server_url,) if self.server_url is not None else ()
        endpoints = (*self.introspection_endpoints.values(), *self.token_endpoints.values())
        urls = (*base, *self.trusted_issuers, *self.jwks_uris.values(), *endpoints)
        cleartext = sorted({url for url in urls if is_cleartext_over_network(url)})
        if cleartext and not self.allow_http:
            raise ValueError(
                f"http:// Keycloak URLs to a host other than loopback send tokens in clear: {cleartext};"
                " use https://, or set KC_M2M_ALLOW_HTTP=true on a network you trust"
            )

    def _check_client_cert_source(self) -> None:
        """A proxy's certificate header (RFC 8705 §3) needs its name, its format and the proxies to trust."""
        given = (self.client_cert_header is not None, self.client_cert_format is not None, bool(self.trusted_proxies))
        if any(given) and not all(given):
            raise ValueError(
                "KC_M2M_CLIENT_CERT_HEADER, KC_M2M_CLIENT_CERT_FORMAT and KC_M2M_TRUSTED_PROXIES go together:"
                " set all three or none"
            )

    def _check_dpop(self) -> None:
        """DPoP proof algorithms from the one table, a public URL without path tricks, nonces with a key."""
        unknown = sorted(set(self.dpop_algorithms) - SUPPORTED_ALGORITHMS)
        if unknown or not self.dpop_algorithms:
            raise ValueError(
                f"KC_M2M_DPOP_ALGORITHMS must be a non-empty subset of {sorted(SUPPORTED_ALGORITHMS)};"
                f" not allowed: {unknown}"
            )
        if self.public_url is not None:
            check_http_url(self.public_url, "KC_M2M_PUBLIC_URL")
        secret = self.dpop_nonce_secret.get_secret_value() if self.dpop_nonce_secret is not None else ""
        if self.dpop_nonce and (self.dpop == "off" or len(secret) < 32):
            raise ValueError(
                "KC_M2M_DPOP_NONCE needs KC_M2M_DPOP allowed or required, and KC_M2M_DPOP_NONCE_SECRET of at least"
                " 32 characters, the same on every replica"
            )

    def _check_client_credentials(self) -> None:
        """Introspection and token exchange need exactly the credential the client authentication method uses."""
        why = "KC_M2M_INTROSPECTION" if self.introspection != "off" else "KC_M2M_LIGHTWEIGHT_TOKENS"
        why = why if self.introspects else "KC_M2M_TOKEN_EXCHANGE"
        method = self.client_auth_method
        secret = ("KC_M2M_CLIENT_SECRET", self.client_secret)
        key = ("KC_M2M_CLIENT_PRIVATE_KEY", self.client_private_key)
        (needed, value), (_, unused) = (key, secret) if method == "private_key_jwt" else (secret, key)
        if value is None or not value.get_secret_value():
            raise ValueError(f"{why} with KC_M2M_CLIENT_AUTH_METHOD={method} needs {needed}")
        if unused is not None:
            raise ValueError(f"KC_M2M_CLIENT_AUTH_METHOD={method} uses {needed} only: unset the other credential")

    @property
    def introspects(self) -> bool:
        """Whether any token may be introspected: a policy other than ``off``, or lightweight tokens."""
        return self.introspection != "off" or self.lightweight_tokens

    @property
    def http_limits(self) -> HttpLimits:
        """Body cap and total deadline of discovery and key-set fetches."""
        return HttpLimits(self.http_max_body, self.http_timeout)

    @property
    def tls_verify(self) -> ssl.SSLContext | bool:
        """How Keycloak's HTTPS certificate is checked (RFC 9110 §4.3.4): against ``ca_file``, else the
        default trust store."""
        return True if self.ca_file is None else trust_context(self.ca_file, _CA_FILE)

    @property
    def introspecting_client_id(self) -> str:
        """The client id introspection and token exchange authenticate as: ``client_id``, else the audience."""
        return self.client_id or self.audience

    @property
    def trusted_issuers(self) -> tuple[str, ...]:
        """Every fixed trusted ``iss`` value, compared by exact string match (RFC 9068 §4, item 5): the
        realm, the names (not patterns) among the realms, and the issuers; :meth:`realm_matches` adds
        the realms a pattern matches."""
        names = (self.realm,) if self.realm else tuple(realm for realm in self.realms if not _is_pattern(realm))
        derived = tuple(f"{self.server_url}/realms/{name}" for name in names) if self.server_url else ()
        return tuple(dict.fromkeys(derived + self.issuers))

    @property
    def issuers_bounded(self) -> bool:
        """Whether the trusted issuers are a fixed list (no pattern in ``realms``), so an issuer or realm
        label of a metric has bounded values."""
        return not any(_is_pattern(realm) for realm in self.realms)

    def realm_of(self, issuer: str) -> str | None:
        """The realm name when ``issuer`` is exactly ``<server_url>/realms/<name>`` (the issuer built from
        the name, compared as a string) with a name in the strict charset, else None."""
        name = issuer.rpartition("/realms/")[2]
        if self.server_url is None or not _REALM_NAME.fullmatch(name):
            return None
        return name if f"{self.server_url}/realms/{name}" == issuer else None

    def realm_matches(self, issuer: str) -> bool:
        """Whether ``issuer`` is a realm on ``server_url`` that a pattern of ``realms`` matches (fnmatchcase)."""
        name = self.realm_of(issuer)
        return name is not None and any(fnmatchcase(name, realm) for realm in self.realms)

    def audience_for(self, issuer: str) -> str:
        """The audience tokens of ``issuer`` must carry: the ``audiences`` entry naming its realm, else
        the first whose pattern matches it, else ``audience``."""
        name = self.realm_of(issuer) if self.audiences else None
        if name is None:
            return self.audience
        if name in self.audiences:
            return self.audiences[name]
        return next((aud for realm, aud in self.audiences.items() if fnmatchcase(name, realm)), self.audience)


_PATTERN_RULE = (
    "{} must be a realm name or glob pattern of ASCII letters, digits, '.', '_', '-', '*' and '?'"
    " (no '/', '%', '..' or other characters)"
)


def _checked_audience(value: str, variable: str) -> str:
    """An API client id: no quotes or backslashes (it names the RFC 6750 §3 realm), not Keycloak's ``account``."""
    if '"' in value or "\\" in value:
        raise ValueError(f"{variable} must not contain quotes or backslashes (it names the RFC 6750 realm)")
    if value == "account":
        raise ValueError(
            f"{variable} must be this API's client id: 'account' is Keycloak's account console,"
            " present in almost every token"
        )
    return value


def _is_pattern(realm: str) -> bool:
    return "*" in realm or "?" in realm
