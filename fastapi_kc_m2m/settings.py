"""Settings of the resource server, read from ``KC_M2M_*`` environment variables or keyword arguments.

Every default follows ``resource-server.md``; invalid combinations fail at start-up with a message
naming the variable to fix.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ._idp.client_auth import ClientAuthMethod
from ._idp.http import HttpLimits
from ._idp.urls import check_http_url
from ._jose.algorithms import ASSERTION_ALGORITHMS, SUPPORTED_ALGORITHMS

__all__ = ["SUPPORTED_ALGORITHMS", "IntrospectionPolicy", "KeycloakSettings"]

#: When tokens are introspected (RFC 7662): never, for every request, or on routes that ask for it.
IntrospectionPolicy = Literal["off", "always", "per_route"]

_CommaList = Annotated[tuple[str, ...], NoDecode]


def _split(value: Any) -> Any:
    """Accept ``a,b`` as well as a sequence, so environment variables stay readable."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class KeycloakSettings(BaseSettings):
    """What the resource server trusts and how it talks to Keycloak.

    Trusted issuers are ``<server_url>/realms/<realm>`` and/or every entry of ``issuers``; each has its
    own key set, chosen by the token's ``iss``.
    """

    # Inputs stay out of error messages: they may hold the client secret or private key.
    model_config = SettingsConfigDict(env_prefix="KC_M2M_", frozen=True, extra="forbid", hide_input_in_errors=True)

    server_url: str | None = Field(None, description="Keycloak base URL, e.g. http://keycloak:8080")
    realm: str | None = Field(None, description="Realm on server_url whose tokens are trusted")
    issuers: _CommaList = Field((), description="Further trusted issuers, comma-separated")
    jwks_uris: dict[str, str] = Field(
        default_factory=dict, description="JSON object issuer -> jwks_uri, skipping discovery"
    )
    audience: str = Field(description="This API's client id; tokens must carry it in aud")
    allowed_clients: _CommaList = Field((), description="Calling client ids (azp) allowed; empty: any")
    algorithms: _CommaList = Field(("RS256",), description="Accepted JWS algorithms")
    clock_skew: float = Field(60.0, ge=0, le=300, description="Seconds of leeway for exp, nbf and iat")
    max_token_bytes: int = Field(16384, ge=1024, le=1 << 20, description="Longer tokens are refused")
    jwks_ttl: float = Field(300.0, gt=0, description="Seconds a fetched key set counts as fresh")
    jwks_refresh_ahead: float = Field(30.0, ge=0, description="Refresh this long before the TTL ends")
    jwks_refetch_cooldown: float = Field(30.0, ge=0, description="Minimum seconds between unknown-kid refetches")
    jwks_max_stale: float = Field(3600.0, gt=0, description="How long the last good key set serves in an outage")
    jwks_retry_interval: float = Field(5.0, gt=0, description="Seconds between fetch attempts after a failure")
    http_connect_timeout: float = Field(2.0, gt=0, description="Connect timeout towards Keycloak")
    http_timeout: float = Field(5.0, gt=0, description="Total time one request to Keycloak may take")
    http_max_body: int = Field(65536, ge=1024, description="Largest response body accepted from Keycloak")
    token_cache_size: int = Field(10000, ge=0, description="Verified tokens remembered; 0 disables")
    token_cache_ttl: float = Field(300.0, ge=0, description="Upper bound on a remembered token's life")
    introspection: IntrospectionPolicy = Field(
        "off", description="Token introspection: off, always, or per_route (routes using require_active_token)"
    )
    client_id: str | None = Field(
        None, description="This API's own Keycloak client for introspection; default: audience"
    )
    client_secret: SecretStr | None = Field(None, description="Its secret (client_secret_basic, client_secret_post)")
    client_auth_method: ClientAuthMethod = Field("client_secret_basic", description="How it authenticates")
    client_private_key: SecretStr | None = Field(
        None, description="For private_key_jwt: path to a PEM private key file, or a private JWK as JSON"
    )
    client_key_id: str | None = Field(None, description="kid of the client assertion; default: the JWK's kid")
    client_assertion_alg: str = Field("RS256", description="Signing algorithm of the client assertion")
    introspection_endpoints: dict[str, str] = Field(
        default_factory=dict, description="JSON object issuer -> introspection endpoint, skipping discovery"
    )
    introspection_cache_ttl: float = Field(
        30.0, ge=0, description="Seconds an introspection answer is reused: how long a revoked token stays usable"
    )
    introspection_cache_size: int = Field(10000, ge=0, description="Introspection answers remembered; 0 disables")
    introspection_timeout: float = Field(3.0, gt=0, description="Total time one introspection call may take")
    lightweight_tokens: bool = Field(
        False, description="Accept tokens without aud, taking aud and roles from the introspection answer"
    )

    @model_validator(mode="before")
    @classmethod
    def _require_audience(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("audience"):
            raise ValueError(
                "set KC_M2M_AUDIENCE (or audience=) to this API's Keycloak client id; tokens must name it"
                " in 'aud' (add an audience mapper in Keycloak)"
            )
        return data

    @field_validator("issuers", "allowed_clients", "algorithms", mode="before")
    @classmethod
    def _split_lists(cls, value: Any) -> Any:
        return _split(value)

    @field_validator("server_url")
    @classmethod
    def _check_server_url(cls, value: str | None) -> str | None:
        return None if value is None else check_http_url(value.rstrip("/"), "KC_M2M_SERVER_URL")

    @field_validator("issuers")
    @classmethod
    def _check_issuers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(check_http_url(issuer, "each of KC_M2M_ISSUERS") for issuer in value)

    @field_validator("jwks_uris", "introspection_endpoints")
    @classmethod
    def _check_endpoint_urls(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        for uri in value.values():
            check_http_url(uri, f"each URL in KC_M2M_{str(info.field_name).upper()}")
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
        if '"' in value or "\\" in value:
            raise ValueError("KC_M2M_AUDIENCE must not contain quotes or backslashes (it names the RFC 6750 realm)")
        if value == "account":
            raise ValueError(
                "KC_M2M_AUDIENCE must be this API's client id: 'account' is Keycloak's account console,"
                " present in almost every token"
            )
        return value

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
        if not self.trusted_issuers:
            raise ValueError("set KC_M2M_SERVER_URL and KC_M2M_REALM, or KC_M2M_ISSUERS: no issuer is trusted")
        if (self.server_url is None) != (self.realm is None):
            raise ValueError("KC_M2M_SERVER_URL and KC_M2M_REALM go together: set both or neither")
        for variable, mapping in (
            ("KC_M2M_JWKS_URIS", self.jwks_uris),
            ("KC_M2M_INTROSPECTION_ENDPOINTS", self.introspection_endpoints),
        ):
            stray = sorted(set(mapping) - set(self.trusted_issuers))
            if stray:
                raise ValueError(f"{variable} names issuers that are not trusted: {stray}")
        if self.jwks_refresh_ahead >= self.jwks_ttl:
            raise ValueError("KC_M2M_JWKS_REFRESH_AHEAD must be shorter than KC_M2M_JWKS_TTL")
        if self.jwks_max_stale < self.jwks_ttl:
            raise ValueError("KC_M2M_JWKS_MAX_STALE must be at least KC_M2M_JWKS_TTL")
        if self.introspects:
            self._check_client_credentials()
        return self

    def _check_client_credentials(self) -> None:
        """Introspection needs exactly the credential its client authentication method uses."""
        why = "KC_M2M_INTROSPECTION" if self.introspection != "off" else "KC_M2M_LIGHTWEIGHT_TOKENS"
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
    def introspecting_client_id(self) -> str:
        """The client id introspection authenticates as: ``client_id``, else the audience."""
        return self.client_id or self.audience

    @property
    def trusted_issuers(self) -> tuple[str, ...]:
        """Every trusted ``iss`` value, compared by exact string match (RFC 9068 §4, item 5)."""
        derived = (f"{self.server_url}/realms/{self.realm}",) if self.server_url and self.realm else ()
        return tuple(dict.fromkeys(derived + self.issuers))
