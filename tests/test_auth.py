"""server.auth: minting and verifying tokens, every refusal as a value with its code."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jwt.algorithms import has_crypto

from protocol.errors import CloseCode, Code
from protocol.model import Actor
from server.auth import AUDIENCE, AuthError, AuthKeys, Principal, mint, verify
from server.config import ConfigError, Settings, load_settings

NOW = 1_767_225_600_000
"""2026-01-01T00:00:00Z in milliseconds: every test passes the time in."""
SECRET = "0123456789abcdef0123456789abcdef-test"
OTHER_SECRET = "fedcba9876543210fedcba9876543210-other"

SETTINGS = load_settings({"LIVEPILOT_JWT_SECRET": SECRET, "LIVEPILOT_TOKEN_LEEWAY_S": "30"})
KEYS = AuthKeys.from_settings(SETTINGS)

needs_crypto = pytest.mark.skipif(
    not has_crypto,
    reason="RS256 needs the 'cryptography' package, which is not installed in this environment",
)


def claims(**changes: object) -> dict[str, object]:
    """A valid creator claim set as of NOW, with changes (None removes a claim)."""
    base: dict[str, object] = {
        "sub": "c1",
        "role": "creator",
        "creator": "c1",
        "iat": NOW // 1000,
        "exp": NOW // 1000 + 600,
        "aud": AUDIENCE,
    }
    base.update(changes)
    return {key: value for key, value in base.items() if value is not None}


def staff_claims(**changes: object) -> dict[str, object]:
    """A valid staff claim set as of NOW, with changes (None removes a claim)."""
    return claims(
        **{"sub": "s1", "role": "staff", "creator": None, "agency": "a1", "staff": "s1", **changes}
    )


def hs256(payload: dict[str, object], secret: str = SECRET) -> str:
    """Sign any payload with HS256, bypassing mint's checks."""
    return jwt.encode(payload, secret, algorithm="HS256")


def b64(data: bytes) -> str:
    """base64url without padding, as JWS segments are written."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


NONE_HEADER = b64(b'{"alg":"none","typ":"JWT"}')
HS256_HEADER = b64(b'{"alg":"HS256","typ":"JWT"}')


def refused(result: Principal | AuthError) -> Code:
    """The code of a refusal (fails the test if the token was accepted)."""
    assert isinstance(result, AuthError), result
    return result.code


# --- round trips --------------------------------------------------------------------


def test_creator_token_round_trip() -> None:
    """A minted creator token verifies to the creator actor and its expiry in ms."""
    token = mint(SETTINGS, creator="c1", ttl_s=3600, now=NOW)
    assert verify(token, KEYS, now=NOW) == Principal(
        actor=Actor(role="creator", id="c1"), expires_at=NOW + 3_600_000, subject="c1"
    )


def test_staff_token_round_trip() -> None:
    """A minted staff token verifies to the staff actor with its agency."""
    token = mint(SETTINGS, agency="a1", staff="s1", now=NOW)
    result = verify(token, KEYS, now=NOW)
    assert isinstance(result, Principal)
    assert result.actor == Actor(role="staff", id="s1", agency="a1")
    assert result.expires_at == NOW + 3_600_000


def test_minted_claims_are_the_documented_ones() -> None:
    """mint writes sub, role, the ids, iat, exp and aud=livepilot, in seconds."""
    token = mint(SETTINGS, agency="a1", staff="s1", ttl_s=60, now=NOW + 999)
    payload = jwt.decode(token, options={"verify_signature": False})
    assert payload == {
        "sub": "s1",
        "role": "staff",
        "agency": "a1",
        "staff": "s1",
        "iat": NOW // 1000,
        "exp": NOW // 1000 + 60,
        "aud": "livepilot",
    }
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_token_without_audience_is_refused() -> None:
    """aud is required: a token minted for no audience in particular is refused."""
    result = verify(hs256(claims(aud=None)), KEYS, now=NOW)
    assert refused(result) == Code.BAD_TOKEN
    assert isinstance(result, AuthError)
    assert result.reason == "claims: no aud"


def test_token_for_another_audience_is_refused() -> None:
    """A token another service's audience accepts is refused here."""
    result = verify(hs256(claims(aud="billing")), KEYS, now=NOW)
    assert isinstance(result, AuthError)
    assert (result.code, result.reason) == (Code.BAD_TOKEN, "claims: wrong audience")


def test_the_audience_is_the_setting() -> None:
    """LIVEPILOT_JWT_AUDIENCE sets the audience tokens must name and mint writes."""
    settings = load_settings(
        {"LIVEPILOT_JWT_SECRET": SECRET, "LIVEPILOT_JWT_AUDIENCE": "console.example"}
    )
    keys = AuthKeys.from_settings(settings)
    token = mint(settings, creator="c1", now=NOW)
    assert jwt.decode(token, options={"verify_signature": False})["aud"] == "console.example"
    assert isinstance(verify(token, keys, now=NOW), Principal)
    assert refused(verify(mint(SETTINGS, creator="c1", now=NOW), keys, now=NOW)) == (
        Code.BAD_TOKEN
    )  # minted for the default audience
    assert "console.example" in repr(keys)


@pytest.mark.parametrize(
    "payload",
    [claims(sub="c2"), claims(sub="someone"), staff_claims(sub="a1"), staff_claims(sub="s2")],
)
def test_sub_other_than_the_roles_id_is_refused(payload: dict[str, object]) -> None:
    """sub must be the creator id (creator) or the staff id (staff), not another name."""
    result = verify(hs256(payload), KEYS, now=NOW)
    assert isinstance(result, AuthError)
    assert result.code == Code.BAD_TOKEN
    assert result.reason.startswith("claims: sub is not the")


def test_audience_list_containing_livepilot_is_accepted() -> None:
    """aud may be a list, as long as it names livepilot."""
    assert isinstance(verify(hs256(claims(aud=["other", "livepilot"])), KEYS, now=NOW), Principal)


def test_extra_claims_are_ignored() -> None:
    """Claims livepilot does not know (jti, iss, custom) do not refuse a token."""
    token = hs256(claims(jti="t-1", iss="https://idp.example", plan="pro"))
    assert isinstance(verify(token, KEYS, now=NOW), Principal)


def test_fractional_exp_is_accepted() -> None:
    """JWT NumericDate may be fractional; expires_at keeps millisecond precision."""
    result = verify(hs256(claims(exp=NOW / 1000 + 1.5)), KEYS, now=NOW)
    assert isinstance(result, Principal)
    assert result.expires_at == NOW + 1500


# --- expiry and time ----------------------------------------------------------------


def test_expired_token_is_token_expired() -> None:
    """Past exp plus leeway, an authentic token is TOKEN_EXPIRED (retryable)."""
    token = mint(SETTINGS, creator="c1", ttl_s=60, now=NOW)
    result = verify(token, KEYS, now=NOW + 60_000 + 30_000)
    assert refused(result) == Code.TOKEN_EXPIRED
    assert isinstance(result, AuthError)
    assert result.close_code == CloseCode.TOKEN_EXPIRED


def test_leeway_extends_validity_to_the_millisecond() -> None:
    """Within the configured leeway after exp the token still verifies."""
    token = mint(SETTINGS, creator="c1", ttl_s=60, now=NOW)
    assert isinstance(verify(token, KEYS, now=NOW + 60_000 + 29_999), Principal)


def test_zero_leeway_expires_at_exp() -> None:
    """With no leeway a token is valid strictly before exp, expired at exp."""
    keys = AuthKeys.from_settings(load_settings({"LIVEPILOT_JWT_SECRET": SECRET}, token_leeway_s=0))
    token = mint(SETTINGS, creator="c1", ttl_s=60, now=NOW)
    assert isinstance(verify(token, keys, now=NOW + 59_999), Principal)
    assert refused(verify(token, keys, now=NOW + 60_000)) == Code.TOKEN_EXPIRED


def test_expiry_uses_the_time_passed_in_not_the_clock() -> None:
    """A token long expired by the wall clock verifies at the `now` it is given."""
    token = hs256(claims(iat=1_000_000, exp=1_000_600))
    assert isinstance(verify(token, KEYS, now=1_000_000_000), Principal)


def test_iat_in_the_future_is_bad_token() -> None:
    """A token issued beyond the leeway in the future is refused; within it, accepted."""
    assert refused(verify(hs256(claims(iat=NOW // 1000 + 31)), KEYS, now=NOW)) == Code.BAD_TOKEN
    assert isinstance(verify(hs256(claims(iat=NOW // 1000 + 30)), KEYS, now=NOW), Principal)


def test_nbf_in_the_future_is_bad_token() -> None:
    """A token not valid before a time beyond the leeway is refused."""
    assert refused(verify(hs256(claims(nbf=NOW // 1000 + 3600)), KEYS, now=NOW)) == Code.BAD_TOKEN


def test_forged_expired_token_is_bad_token_not_expired() -> None:
    """Forgery is reported before expiry: a forged expired token is BAD_TOKEN."""
    token = mint(load_settings({"LIVEPILOT_JWT_SECRET": OTHER_SECRET}), creator="c1", now=NOW)
    result = verify(token, KEYS, now=NOW + 10 * 3_600_000)
    assert refused(result) == Code.BAD_TOKEN
    assert isinstance(result, AuthError)
    assert result.close_code == CloseCode.BAD_TOKEN


# --- forged and malformed -----------------------------------------------------------


def test_wrong_secret_is_bad_token() -> None:
    """A token signed with another secret is refused."""
    token = mint(load_settings({"LIVEPILOT_JWT_SECRET": OTHER_SECRET}), creator="c1", now=NOW)
    assert refused(verify(token, KEYS, now=NOW)) == Code.BAD_TOKEN


def test_tampered_payload_is_bad_token() -> None:
    """Swapping in another payload under the original signature is refused."""
    header, _, signature = mint(SETTINGS, creator="c1", now=NOW).split(".")
    payload = b64(json.dumps(claims(creator="c2", sub="c2")).encode())
    assert refused(verify(f"{header}.{payload}.{signature}", KEYS, now=NOW)) == Code.BAD_TOKEN


def test_signature_from_another_token_is_bad_token() -> None:
    """A signature lifted from another valid token does not verify this one."""
    header, payload, _ = mint(SETTINGS, creator="c1", now=NOW).split(".")
    other_signature = mint(SETTINGS, creator="c2", now=NOW).split(".")[2]
    token = f"{header}.{payload}.{other_signature}"
    assert refused(verify(token, KEYS, now=NOW)) == Code.BAD_TOKEN


def test_alg_none_is_bad_token() -> None:
    """An unsigned token (alg none) is refused, whatever it claims."""
    token = jwt.encode(claims(), "", algorithm="none")
    assert refused(verify(token, KEYS, now=NOW)) == Code.BAD_TOKEN
    handmade = f"{NONE_HEADER}.{b64(json.dumps(claims()).encode())}."
    assert refused(verify(handmade, KEYS, now=NOW)) == Code.BAD_TOKEN


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_other_hmac_algorithm_is_bad_token() -> None:
    """Only HS256 is accepted: the same secret with HS512 is refused."""
    token = jwt.encode(claims(), SECRET, algorithm="HS512")
    assert refused(verify(token, KEYS, now=NOW)) == Code.BAD_TOKEN


@pytest.mark.parametrize(
    "token",
    [
        "",
        "garbage",
        "a.b.c",
        "...",
        "e30.e30.e30",
        "x" * 9000,
        f"{HS256_HEADER}.{b64(b'[1,2,3]')}.sig",
        f"{HS256_HEADER}.{b64(b'not json')}.sig",
        "ünïcødé.tøkén.∑",
    ],
)
def test_garbage_is_bad_token(token: str) -> None:
    """Anything that is not a JWT is refused, never raised."""
    assert refused(verify(token, KEYS, now=NOW)) == Code.BAD_TOKEN


@pytest.mark.parametrize("token", [None, b"bytes.are.not", 42])
def test_non_string_token_is_bad_token(token: object) -> None:
    """A missing or non-string token (e.g. from a lax decoder) is refused."""
    assert refused(verify(token, KEYS, now=NOW)) == Code.BAD_TOKEN


@given(st.text(max_size=300))
def test_arbitrary_text_never_raises(token: str) -> None:
    """verify returns a value for any input string: it never raises."""
    assert refused(verify(token, KEYS, now=NOW)) == Code.BAD_TOKEN


@pytest.mark.parametrize("missing", ["sub", "role", "exp", "creator"])
def test_missing_creator_claim_is_bad_token(missing: str) -> None:
    """A creator token without sub, role, exp or creator is refused."""
    assert refused(verify(hs256(claims(**{missing: None})), KEYS, now=NOW)) == Code.BAD_TOKEN


@pytest.mark.parametrize("missing", ["agency", "staff"])
def test_missing_staff_claim_is_bad_token(missing: str) -> None:
    """A staff token without its agency or its staff id is refused."""
    token = hs256(staff_claims(**{missing: None}))
    assert refused(verify(token, KEYS, now=NOW)) == Code.BAD_TOKEN


@pytest.mark.parametrize("role", ["admin", "agency", "Creator", "", 1, None, ["creator"]])
def test_wrong_role_is_bad_token(role: object) -> None:
    """role must be exactly "creator" or "staff"."""
    payload = claims(role=role) if role is not None else claims(role=None)
    assert refused(verify(hs256(payload), KEYS, now=NOW)) == Code.BAD_TOKEN


def test_staff_role_with_only_a_creator_claim_is_bad_token() -> None:
    """A creator's claims under role staff do not make a staff member."""
    assert refused(verify(hs256(claims(role="staff")), KEYS, now=NOW)) == Code.BAD_TOKEN


@pytest.mark.parametrize(
    "changes",
    [
        {"exp": "tomorrow"},
        {"exp": True},
        {"exp": -1},
        {"iat": "now"},
        {"sub": ""},
        {"sub": 7},
        {"creator": "has spaces"},
        {"creator": ""},
        {"creator": "x" * 129},
        {"aud": "other-service"},
        {"aud": []},
        {"aud": 5},
    ],
)
def test_malformed_claim_is_bad_token(changes: dict[str, object]) -> None:
    """Claims of the wrong type, out of range, or ids outside the protocol's Id are refused."""
    assert refused(verify(hs256(claims(**changes)), KEYS, now=NOW)) == Code.BAD_TOKEN


def test_refusal_reasons_never_contain_the_token() -> None:
    """An AuthError's reason is safe to log: no part of the token is in it."""
    token = mint(load_settings({"LIVEPILOT_JWT_SECRET": OTHER_SECRET}), creator="c1", now=NOW)
    for candidate in (token, token[:-3], hs256(claims(role="admin")), "x" * 50):
        result = verify(candidate, KEYS, now=NOW)
        assert isinstance(result, AuthError)
        assert all(part not in result.reason for part in candidate.split(".") if len(part) > 8)


# --- mint and keys ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("creator", "agency", "staff"),
    [(None, None, None), (None, "a1", None), (None, None, "s1"), ("c1", "a1", "s1")],
)
def test_mint_needs_exactly_one_kind_of_actor(
    creator: str | None, agency: str | None, staff: str | None
) -> None:
    """mint wants creator=, or agency= with staff=, nothing else."""
    with pytest.raises(ValueError, match="creator"):
        mint(SETTINGS, creator=creator, agency=agency, staff=staff, now=NOW)


def test_mint_refuses_a_non_positive_ttl() -> None:
    """A token that is born expired is a caller bug."""
    with pytest.raises(ValueError, match="ttl_s"):
        mint(SETTINGS, creator="c1", ttl_s=0, now=NOW)


def test_dev_secret_round_trip() -> None:
    """The default settings (dev secret) mint and verify without key-length trouble."""
    settings = Settings()
    token = mint(settings, creator="c1", now=NOW)
    assert isinstance(verify(token, AuthKeys.from_settings(settings), now=NOW), Principal)


def test_short_secret_is_refused_at_start_up() -> None:
    """Settings built by hand with a short secret fail when the keys are made."""
    with pytest.raises(ConfigError) as exc:
        AuthKeys.from_settings(Settings(jwt_secret="short"))
    assert [name for name, _ in exc.value.problems] == ["LIVEPILOT_JWT_SECRET"]


def test_keys_repr_hides_the_secret() -> None:
    """AuthKeys can be logged: the key is not in its repr."""
    assert SECRET not in repr(KEYS)
    assert "HS256" in repr(KEYS)


def test_unreadable_public_key_file_names_the_variable(tmp_path: Path) -> None:
    """A missing RS256 key file (or missing cryptography) is a ConfigError on its variable."""
    settings = load_settings({}, jwt_public_key_path=str(tmp_path / "absent.pem"))
    with pytest.raises(ConfigError) as exc:
        AuthKeys.from_settings(settings)
    assert [name for name, _ in exc.value.problems] == ["LIVEPILOT_JWT_PUBLIC_KEY_PATH"]


def test_mint_for_an_rs256_server_needs_the_private_key() -> None:
    """An HS256 token would be refused by an RS256 server, so mint refuses to make one."""
    settings = load_settings({}, jwt_public_key_path="/etc/livepilot/jwt.pub")
    with pytest.raises(ValueError, match="private_key"):
        mint(settings, creator="c1", now=NOW)


# --- RS256 --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rsa_pems() -> tuple[bytes, bytes]:
    """A fresh 2048-bit RSA key pair, (private PEM, public PEM)."""
    from cryptography.hazmat.primitives import (  # type: ignore[import-not-found,unused-ignore]
        serialization,
    )
    from cryptography.hazmat.primitives.asymmetric import (  # type: ignore[import-not-found,unused-ignore]
        rsa,
    )

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem: bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem: bytes = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


@pytest.fixture
def rs_settings(tmp_path: Path, rsa_pems: tuple[bytes, bytes]) -> Settings:
    """Settings of an RS256 server whose public key file is in tmp_path."""
    path = tmp_path / "jwt.pub"
    path.write_bytes(rsa_pems[1])
    return load_settings({"LIVEPILOT_JWT_PUBLIC_KEY_PATH": str(path)})


@needs_crypto
def test_rs256_round_trip(rs_settings: Settings, rsa_pems: tuple[bytes, bytes]) -> None:
    """A token minted with the private key verifies with the public key file."""
    keys = AuthKeys.from_settings(rs_settings)
    assert keys.algorithm == "RS256"
    token = mint(rs_settings, agency="a1", staff="s1", now=NOW, private_key=rsa_pems[0])
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    result = verify(token, keys, now=NOW)
    assert isinstance(result, Principal)
    assert result.actor == Actor(role="staff", id="s1", agency="a1")


@needs_crypto
def test_rs256_expired_is_token_expired(
    rs_settings: Settings, rsa_pems: tuple[bytes, bytes]
) -> None:
    """Expiry works the same with RS256."""
    keys = AuthKeys.from_settings(rs_settings)
    token = mint(rs_settings, creator="c1", ttl_s=60, now=NOW, private_key=rsa_pems[0])
    assert refused(verify(token, keys, now=NOW + 91_000)) == Code.TOKEN_EXPIRED


@needs_crypto
def test_rs256_server_refuses_hs256_tokens(rs_settings: Settings) -> None:
    """With a public key configured, a token signed with the (dev) secret is refused."""
    keys = AuthKeys.from_settings(rs_settings)
    assert refused(verify(hs256(claims(), rs_settings.jwt_secret), keys, now=NOW)) == Code.BAD_TOKEN


@needs_crypto
def test_rs256_server_refuses_hmac_signed_with_the_public_key(
    rs_settings: Settings, rsa_pems: tuple[bytes, bytes]
) -> None:
    """Algorithm confusion: HS256 keyed with the public PEM is refused."""
    keys = AuthKeys.from_settings(rs_settings)
    signing_input = f"{HS256_HEADER}.{b64(json.dumps(claims()).encode())}"
    signature = hmac.new(rsa_pems[1], signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{b64(signature)}"
    assert refused(verify(token, keys, now=NOW)) == Code.BAD_TOKEN


@needs_crypto
def test_rs256_token_from_another_key_is_bad_token(rs_settings: Settings) -> None:
    """A token signed by a different RSA key is refused."""
    from cryptography.hazmat.primitives.asymmetric import (  # type: ignore[import-not-found,unused-ignore]
        rsa,
    )

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(claims(), other, algorithm="RS256")
    assert refused(verify(token, AuthKeys.from_settings(rs_settings), now=NOW)) == Code.BAD_TOKEN


@needs_crypto
def test_hs256_server_refuses_rs256_tokens(rsa_pems: tuple[bytes, bytes]) -> None:
    """Without a public key configured, RS256 tokens are refused."""
    token = mint(SETTINGS, creator="c1", now=NOW, private_key=rsa_pems[0])
    assert refused(verify(token, KEYS, now=NOW)) == Code.BAD_TOKEN


@needs_crypto
def test_private_key_file_is_refused_as_public_key(
    tmp_path: Path, rsa_pems: tuple[bytes, bytes]
) -> None:
    """Configuring the private key where the public one belongs is a ConfigError."""
    path = tmp_path / "jwt.key"
    path.write_bytes(rsa_pems[0])
    settings = load_settings({"LIVEPILOT_JWT_PUBLIC_KEY_PATH": str(path)})
    with pytest.raises(ConfigError, match="LIVEPILOT_JWT_PUBLIC_KEY_PATH"):
        AuthKeys.from_settings(settings)


@needs_crypto
def test_non_pem_public_key_is_refused(tmp_path: Path) -> None:
    """A key file that is not an RSA public key in PEM is a ConfigError."""
    path = tmp_path / "jwt.pub"
    path.write_text("not a key\n")
    settings = load_settings({"LIVEPILOT_JWT_PUBLIC_KEY_PATH": str(path)})
    with pytest.raises(ConfigError, match="LIVEPILOT_JWT_PUBLIC_KEY_PATH"):
        AuthKeys.from_settings(settings)


@needs_crypto
def test_public_key_pem_can_be_given_directly(rsa_pems: tuple[bytes, bytes]) -> None:
    """AuthKeys.from_settings takes the PEM itself, without a file."""
    keys = AuthKeys.from_settings(Settings(), public_key_pem=rsa_pems[1])
    token = mint(SETTINGS, creator="c1", now=NOW, private_key=rsa_pems[0])
    assert isinstance(verify(token, keys, now=NOW), Principal)
