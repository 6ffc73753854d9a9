"""Tokens: who is this connection, a creator or a staff member of an agency.

A token is a JWT. By default it is HS256 signed with ``Settings.jwt_secret``;
when ``Settings.jwt_public_key_path`` is set it must be RS256 signed by the
matching private key (the server only verifies; :func:`mint` takes the
private key for the CLI and tests). Exactly one algorithm is accepted, so
``alg: none`` and HS256-signed-with-the-public-key tokens are refused.

Claims:

=========  ==================================================================
``sub``    required: the role's id claim (``creator``, or ``staff``), equal
``role``   required, ``"creator"`` or ``"staff"``
``creator`` required for a creator: the creator id
``agency`` required for staff: the agency id
``staff``  required for staff: the staff member's id
``exp``    required, seconds since the epoch
``iat``    optional; refused if more than the leeway in the future
``nbf``    optional; refused if more than the leeway in the future
``aud``    required: ``Settings.jwt_audience`` (``LIVEPILOT_JWT_AUDIENCE``,
           default ``"livepilot"``), or a list containing it
=========  ==================================================================

Why ``aud`` is required: an identity provider that signs tokens for several
services with one key would otherwise have every one of them accepted here.
Why ``sub`` must be the id: ``sub`` is who the token is about to everything
else that reads it (logs, the provider); a token naming one subject and
acting as another is refused rather than trusted either way.

This is an edge: :func:`verify` returns an :class:`AuthError` value, never raises
for a bad token. Time is a parameter (``now``, milliseconds since the epoch) and
PyJWT's own clock checks are off, so expiry is decided against ``now`` alone.
Nothing here logs, and no error message repeats a token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import jwt
import msgspec
from jwt.algorithms import get_default_algorithms, has_crypto
from msgspec import Meta

from protocol.commands import Token
from protocol.errors import CloseCode, Code
from protocol.model import Actor, Id
from server.config import (
    DEFAULT_JWT_AUDIENCE,
    MIN_JWT_SECRET_BYTES,
    ConfigError,
    Settings,
    option,
)

__all__ = [
    "AUDIENCE",
    "MAX_TOKEN_CHARS",
    "AuthError",
    "AuthKeys",
    "Principal",
    "mint",
    "verify",
]

AUDIENCE = DEFAULT_JWT_AUDIENCE
"""The audience tokens name unless ``LIVEPILOT_JWT_AUDIENCE`` says otherwise."""
MAX_TOKEN_CHARS = 8192
"""Longest token looked at; the same bound as the protocol's ``Token`` type."""

Algorithm = Literal["HS256", "RS256"]


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """An authenticated connection: who it is, and until when the token holds."""

    actor: Actor
    expires_at: int
    """The token's ``exp`` in milliseconds since the epoch (without leeway)."""
    subject: str


class AuthError(msgspec.Struct, frozen=True, kw_only=True):
    """A refused token. ``reason`` is safe to log: it never contains the token."""

    code: Code
    reason: str

    @property
    def close_code(self) -> CloseCode:
        """The WebSocket close code for a handshake refused with this error."""
        return CloseCode.TOKEN_EXPIRED if self.code == Code.TOKEN_EXPIRED else CloseCode.BAD_TOKEN


@dataclass(frozen=True, repr=False)
class AuthKeys:
    """What :func:`verify` checks a token with. Build once per server, at start-up."""

    algorithm: Algorithm
    key: str | bytes
    """The HS256 secret, or the RS256 public key in PEM."""
    leeway_s: int = 0
    audience: str = AUDIENCE
    """The ``aud`` every token must name (or list)."""

    def __repr__(self) -> str:
        return (
            f"AuthKeys(algorithm={self.algorithm!r}, leeway_s={self.leeway_s}, "
            f"audience={self.audience!r})"
        )

    @classmethod
    def from_settings(cls, settings: Settings, *, public_key_pem: bytes | None = None) -> AuthKeys:
        """The keys the settings name; reads the RS256 public key file if one is set.

        ``public_key_pem`` stands in for the file's content (tests). Raises
        :class:`~server.config.ConfigError` if the key cannot be used.
        """
        key_var = option("jwt_public_key_path").env
        if settings.jwt_public_key_path is None and public_key_pem is None:
            if len(settings.jwt_secret.encode()) < MIN_JWT_SECRET_BYTES:
                raise ConfigError(
                    [
                        (
                            option("jwt_secret").env,
                            f"must be at least {MIN_JWT_SECRET_BYTES} bytes long (RFC 7518)",
                        )
                    ]
                )
            return cls("HS256", settings.jwt_secret, settings.token_leeway_s, settings.jwt_audience)
        if not has_crypto:
            raise ConfigError(
                [
                    (
                        key_var,
                        "RS256 needs the 'cryptography' package, which is not installed",
                    )
                ]
            )
        if public_key_pem is None:
            assert settings.jwt_public_key_path is not None
            try:
                public_key_pem = Path(settings.jwt_public_key_path).read_bytes()
            except OSError as e:
                raise ConfigError([(key_var, f"cannot read the key file: {e.strerror}")]) from e
        if b"PRIVATE KEY" in public_key_pem:
            raise ConfigError([(key_var, "a private key: give the server the public one")])
        try:
            get_default_algorithms()["RS256"].prepare_key(public_key_pem)
        except (ValueError, TypeError, jwt.InvalidKeyError) as e:
            raise ConfigError([(key_var, "not an RSA public key in PEM")]) from e
        return cls("RS256", public_key_pem, settings.token_leeway_s, settings.jwt_audience)


# --- claims, validated with msgspec (a tagged union on "role") ----------------------

NumericDate = Annotated[float, Meta(ge=0, le=1e11)]
Subject = Annotated[str, Meta(min_length=1, max_length=256)]


class _Claims(msgspec.Struct, frozen=True, kw_only=True, tag_field="role"):
    sub: Subject
    exp: NumericDate
    iat: NumericDate | None = None
    nbf: NumericDate | None = None


class _CreatorClaims(_Claims, frozen=True, tag="creator"):
    creator: Id


class _StaffClaims(_Claims, frozen=True, tag="staff"):
    agency: Id
    staff: Id


def _bad(reason: str) -> AuthError:
    return AuthError(code=Code.BAD_TOKEN, reason=reason)


def verify(token: object, keys: AuthKeys, *, now: int) -> Principal | AuthError:
    """Who ``token`` names, or why it is refused; ``now`` in ms since the epoch.

    BAD_TOKEN for anything missing, malformed, forged or not yet valid;
    TOKEN_EXPIRED only for an authentic token whose ``exp`` (plus leeway) has passed.
    """
    if not isinstance(token, str) or not token:
        return _bad("no token")
    if len(token) > MAX_TOKEN_CHARS:
        return _bad("token too long")
    try:
        payload = jwt.decode(
            token,
            keys.key,
            algorithms=[keys.algorithm],
            audience=keys.audience,
            options={
                "verify_signature": True,
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
                "verify_aud": True,
                "verify_iss": False,
                "enforce_minimum_key_length": True,
            },
        )
    except jwt.InvalidSignatureError:
        return _bad("the signature does not verify")
    except jwt.InvalidAlgorithmError:
        return _bad(f"the algorithm is not {keys.algorithm}")
    except jwt.MissingRequiredClaimError as e:
        return _bad(f"claims: no {e.claim}")
    except jwt.InvalidAudienceError:
        return _bad("claims: wrong audience")
    except jwt.InvalidTokenError as e:
        return _bad(f"not a JWT ({type(e).__name__})")
    try:
        claims = msgspec.convert(payload, _CreatorClaims | _StaffClaims)
    except msgspec.ValidationError as e:
        return _bad(f"claims: {e}")
    if isinstance(claims, _CreatorClaims):
        actor = Actor(role="creator", id=claims.creator)
    else:
        actor = Actor(role="staff", id=claims.staff, agency=claims.agency)
    if claims.sub != actor.id:
        return _bad(f"claims: sub is not the {actor.role} id")
    leeway_ms = keys.leeway_s * 1000
    for name, at in (("iat", claims.iat), ("nbf", claims.nbf)):
        if at is not None and _millis(at) > now + leeway_ms:
            return _bad(f"claims: {name} is in the future")
    expires_at = _millis(claims.exp)
    if now >= expires_at + leeway_ms:
        return AuthError(code=Code.TOKEN_EXPIRED, reason="token expired")
    return Principal(actor=actor, expires_at=expires_at, subject=claims.sub)


def _millis(seconds: float) -> int:
    return math.floor(seconds * 1000)


def mint(
    settings: Settings,
    *,
    creator: str | None = None,
    agency: str | None = None,
    staff: str | None = None,
    ttl_s: int = 3600,
    now: int,
    private_key: str | bytes | None = None,
) -> Token:
    """A token for a creator (``creator=``) or a staff member (``agency=`` and ``staff=``),
    for the settings' audience (``jwt_audience``), with ``sub`` the role's id.

    ``now`` in ms since the epoch. HS256 with the settings' secret, unless
    ``private_key`` (PEM) is given: then RS256, as a server with
    ``jwt_public_key_path`` requires. Raises ValueError for a wrong combination.
    """
    if creator is not None and (agency is not None or staff is not None):
        raise ValueError("a token is for a creator or for a staff member, not both")
    if creator is not None:
        actor_claims: dict[str, str] = {"sub": creator, "role": "creator", "creator": creator}
    elif agency is not None and staff is not None:
        actor_claims = {"sub": staff, "role": "staff", "agency": agency, "staff": staff}
    else:
        raise ValueError("give creator=, or both agency= and staff=")
    if ttl_s <= 0:
        raise ValueError("ttl_s must be positive")
    issued = now // 1000
    payload: dict[str, str | int] = {
        **actor_claims,
        "iat": issued,
        "exp": issued + ttl_s,
        "aud": settings.jwt_audience,
    }
    if private_key is not None:
        return jwt.encode(payload, private_key, algorithm="RS256")
    if settings.jwt_public_key_path is not None:
        raise ValueError("this server checks RS256 tokens: mint with private_key=")
    return jwt.encode(payload, settings.jwt_secret, algorithm="HS256")
