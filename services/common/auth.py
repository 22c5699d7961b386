"""Bearer tokens: verify (JWKS from the identity provider, or the local key) and mint (local).

Production points TONGYUAN_AUTH_JWKS_URL at the portal identity provider's JWKS; the embedded
default generates an ES256 key under var/auth/ on first run, and `tongyuan token` mints with it.
"""

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from contracts.identity import Principal, Role

ALGORITHMS = ["ES256", "RS256"]


class InvalidToken(Exception):
    """Missing, malformed, forged, expired, or for another issuer or audience."""


class LocalKey:
    """The embedded identity provider's signing key (generated once, kept under var/auth)."""

    def __init__(self, directory: Path, issuer: str):
        self.issuer = issuer
        path = directory / "signing-key.pem"
        if not path.exists():
            directory.mkdir(parents=True, exist_ok=True)
            new_key = ec.generate_private_key(ec.SECP256R1())
            pem = new_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
            temporary = path.with_suffix(".tmp")
            temporary.write_bytes(pem)
            temporary.chmod(0o600)
            temporary.replace(path)  # two processes starting at once agree on one key
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{path} must hold an EC (ES256) private key")
        self.private_key: ec.EllipticCurvePrivateKey = loaded
        self.kid = "local-" + str(uuid.uuid5(uuid.NAMESPACE_URL, str(path.resolve())))[:8]

    def jwks(self) -> dict:
        public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.private_key.public_key()))
        return {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "ES256"}]}

    def mint(self, principal: Principal, *, audience: str, ttl: float = 8 * 3600, now: float | None = None) -> str:
        issued = int(now if now is not None else time.time())
        claims = {
            "iss": self.issuer,
            "aud": audience,
            "sub": principal.user,
            "roles": list(principal.roles),
            "regions": list(principal.regions),
            "iat": issued,
            "nbf": issued,
            "exp": issued + int(ttl),
        }
        return jwt.encode(claims, self.private_key, algorithm="ES256", headers={"kid": self.kid})


class TokenVerifier:
    def __init__(self, *, issuer: str, audience: str, leeway: float, local: LocalKey | None = None, jwks_url: str | None = None):
        if (local is None) == (jwks_url is None):
            raise ValueError("verify with exactly one of a local key or a JWKS URL")
        self.issuer, self.audience, self.leeway = issuer, audience, leeway
        self.local = local
        self.jwks = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=300) if jwks_url else None

    def verify(self, token: str) -> Principal:
        try:
            key = self.local.private_key.public_key() if self.local else self.jwks.get_signing_key_from_jwt(token).key  # type: ignore[union-attr]
            claims = jwt.decode(
                token,
                key,
                algorithms=ALGORITHMS,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
            return Principal(
                user=claims["sub"],
                roles=tuple(r for r in claims.get("roles", ()) if r in ("editor", "approver", "admin")),
                regions=tuple(claims.get("regions", ())),
            )
        except (jwt.PyJWTError, ValueError, KeyError, TypeError) as exc:
            raise InvalidToken(str(exc)) from exc


_SCHEME = HTTPBearer(auto_error=False, description="a token from the portal's identity provider (or `tongyuan token`)")


# Marks a route's requirement in the OpenAPI document, so a test can walk every write route and
# prove the requirement is enforced (and a route that declares none is caught).
ROLE_EXTENSION = "x-tongyuan-role"
REGION_EXTENSION = "x-tongyuan-region"


def current_principal(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_SCHEME)]) -> Principal:
    """A FastAPI dependency: the principal verified by the verifier the composition root put on
    `app.state.verifier` (module-level routers authenticate without being handed a closure)."""
    if credentials is None:
        raise HTTPException(401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    try:
        return request.app.state.verifier.verify(credentials.credentials)
    except InvalidToken as exc:
        raise HTTPException(401, f"invalid token: {exc}", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}) from None


def requires_role(role: Role) -> Callable[..., Principal]:
    """A FastAPI dependency: the verified principal if it holds `role` (an admin holds every
    role), else 403. Anonymous or forged: 401, from `current_principal`, before any body is read."""

    def authorise(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if not principal.has(role):
            raise HTTPException(403, f"this change needs the {role} role")
        return principal

    return authorise


def declared(role: str, region: str | None = None) -> dict:
    """`openapi_extra` for a write route: the role it needs and, for a regional write, where the
    region comes from (checked by the gate against the principal's regions)."""
    return {ROLE_EXTENSION: role, **({REGION_EXTENSION: region} if region else {})}


def build_verifier(settings) -> tuple[TokenVerifier, LocalKey | None]:
    """The production verifier (JWKS) or the embedded one with its local key."""
    if settings.auth_jwks_url:
        return TokenVerifier(issuer=settings.auth_issuer, audience=settings.auth_audience, leeway=settings.auth_leeway, jwks_url=settings.auth_jwks_url), None
    local = LocalKey(Path(settings.var_dir) / "auth", settings.auth_issuer)
    return TokenVerifier(issuer=settings.auth_issuer, audience=settings.auth_audience, leeway=settings.auth_leeway, local=local), local
