"""Cross-signing: the bot's own identity, and the identities of the people it writes to.

Element (matrix-rust-sdk) judges a device by whether its owner's cross-signing identity
signed it: an unsigned sender gets a red shield, and with "exclude insecure devices"
(MSC4153) its messages are not decrypted at all. matrix-nio has no cross-signing, so
this module holds what the bot needs (spec: "Cross-signing", client-server API v1.11):

- three ed25519 key pairs per account: master (the identity), self-signing (signs the
  account's devices) and user-signing (signs other users' masters; unused by the bot,
  but part of a complete identity, as Element creates it);
- signatures over canonical JSON (`canonicaljson`, Synapse's own library) with
  `signatures` and `unsigned` removed, key ids `ed25519:<unpadded base64 public key>`;
- verification of another user's chain: device ← self-signing key ← master key.

Pure: no I/O but the key store's private file (see `load_keys`/`save_keys`). Private
keys live only in `KEYS_FILE`, encrypted with MATRIX_STORE_PASSPHRASE when one is set
(scrypt + AES-256-GCM); `identity_record.py`'s `IDENTITY_FILE` holds public values
only, so `status` can read it.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .identity_record import write_private_json

KEYS_FILE = "cross_signing_keys.json"
ED25519 = "ed25519"
USAGES = ("master", "self_signing", "user_signing")

# scrypt at n=2**15 costs ~0.1 s and 32 MiB: paid only when a private key is needed
# (signing a new device, matrix-login), never on a warm delivery.
_SCRYPT = {"n": 2**15, "r": 8, "p": 1}


class CrossSigningError(Exception):
    """The key store cannot be used (wrong passphrase, damaged file); says why, no secret."""


# --- encodings ------------------------------------------------------------------------------


def unpadded_b64(data: bytes) -> str:
    """Matrix's key and signature encoding: standard base64 without `=` padding
    (matrix-rust-sdk rejects padded key ids)."""
    from unpaddedbase64 import encode_base64

    encoded: str = encode_base64(data)
    return encoded


def from_unpadded_b64(text: str) -> bytes:
    from unpaddedbase64 import decode_base64

    decoded: bytes = decode_base64(text)
    return decoded


def canonical_json(value: Mapping[str, Any]) -> bytes:
    """What a signature covers: canonical JSON without `signatures` and `unsigned`."""
    from canonicaljson import encode_canonical_json

    stripped = {k: v for k, v in value.items() if k not in ("signatures", "unsigned")}
    encoded: bytes = encode_canonical_json(stripped)
    return encoded


# --- keys -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One ed25519 key pair; the seed never appears in repr."""

    seed: bytes = field(repr=False)

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(secrets.token_bytes(32))

    @property
    def public(self) -> str:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        key = Ed25519PrivateKey.from_private_bytes(self.seed)
        return unpadded_b64(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))

    @property
    def key_id(self) -> str:
        return f"{ED25519}:{self.public}"

    def signature(self, value: Mapping[str, Any]) -> str:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return unpadded_b64(Ed25519PrivateKey.from_private_bytes(self.seed).sign(canonical_json(value)))

    def sign(self, value: Mapping[str, Any], user_id: str) -> dict[str, Any]:
        """A copy of `value` that carries this key's signature (and only the signatures
        it already had besides)."""
        signed = {k: v for k, v in value.items() if k != "unsigned"}
        signatures = {u: dict(s) for u, s in dict(value.get("signatures") or {}).items()}
        signatures.setdefault(user_id, {})[self.key_id] = self.signature(value)
        signed["signatures"] = signatures
        return signed


def verify_signature(value: Mapping[str, Any], user_id: str, public_key: str) -> bool:
    """Whether `value` carries a valid signature by `user_id`'s ed25519 `public_key`."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    signatures = value.get("signatures")
    if not isinstance(signatures, Mapping):
        return False
    by_user = signatures.get(user_id)
    signature = by_user.get(f"{ED25519}:{public_key}") if isinstance(by_user, Mapping) else None
    if not isinstance(signature, str):
        return False
    try:
        key = Ed25519PublicKey.from_public_bytes(from_unpadded_b64(public_key))
        key.verify(from_unpadded_b64(signature), canonical_json(value))
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


@dataclass(frozen=True, slots=True)
class CrossSigningKeys:
    """The bot's identity: its three key pairs (private)."""

    user_id: str
    master: SigningKey
    self_signing: SigningKey
    user_signing: SigningKey

    @classmethod
    def generate(cls, user_id: str) -> CrossSigningKeys:
        return cls(user_id, SigningKey.generate(), SigningKey.generate(), SigningKey.generate())

    def public(self, usage: str) -> dict[str, Any]:
        key: SigningKey = getattr(self, usage)
        return {"user_id": self.user_id, "usage": [usage], "keys": {key.key_id: key.public}}

    def upload_body(self) -> dict[str, Any]:
        """The body of POST /keys/device_signing/upload: the master key, and the two
        subkeys signed by it."""
        return {
            "master_key": self.public("master"),
            "self_signing_key": self.master.sign(self.public("self_signing"), self.user_id),
            "user_signing_key": self.master.sign(self.public("user_signing"), self.user_id),
        }

    def sign_device(self, device_keys: Mapping[str, Any]) -> dict[str, Any]:
        """`device_keys` (as the homeserver published them) with only the self-signing
        key's signature: the body part for POST /keys/signatures/upload."""
        bare = {k: v for k, v in device_keys.items() if k not in ("signatures", "unsigned")}
        return self.self_signing.sign(bare, self.user_id)


# --- someone's published identity (from /keys/query) --------------------------------------------


def single_key(key_object: Any, user_id: str, usage: str) -> str | None:
    """The one ed25519 public key of a cross-signing key object, if it is well-formed."""
    if not isinstance(key_object, Mapping) or key_object.get("user_id") != user_id:
        return None
    usages = key_object.get("usage")
    if not isinstance(usages, list) or usage not in usages:
        return None
    keys = key_object.get("keys")
    if not isinstance(keys, Mapping) or len(keys) != 1:
        return None
    [(key_id, public)] = keys.items()
    if not isinstance(public, str) or key_id != f"{ED25519}:{public}":
        return None
    return public


@dataclass(frozen=True, slots=True)
class PublishedIdentity:
    """A user's cross-signing identity as the homeserver publishes it, with every
    signature checked here: `signed_devices` maps each device the self-signing key
    validly signed to that device's ed25519 key."""

    user_id: str
    master: str | None = None
    self_signing: str | None = None
    signed_devices: Mapping[str, str] = field(default_factory=dict)

    def signs(self, device_id: str, ed25519: str) -> bool:
        return self.signed_devices.get(device_id) == ed25519

    @classmethod
    def from_keys_query(cls, answer: Mapping[str, Any], user_id: str) -> PublishedIdentity:
        master = single_key(_dig(answer, "master_keys", user_id), user_id, "master")
        if master is None:
            return cls(user_id)
        ssk_object = _dig(answer, "self_signing_keys", user_id)
        self_signing = single_key(ssk_object, user_id, "self_signing")
        if self_signing is None or not verify_signature(ssk_object, user_id, master):
            return cls(user_id, master)
        signed: dict[str, str] = {}
        devices = _dig(answer, "device_keys", user_id)
        for device_id, device in devices.items() if isinstance(devices, Mapping) else ():
            if not isinstance(device, Mapping) or device.get("device_id") != device_id:
                continue
            keys = device.get("keys")
            ed25519 = keys.get(f"{ED25519}:{device_id}") if isinstance(keys, Mapping) else None
            if isinstance(ed25519, str) and verify_signature(device, user_id, self_signing):
                signed[device_id] = ed25519
        return cls(user_id, master, self_signing, signed)

    def to_json(self) -> dict[str, Any]:
        return {"master": self.master, "self_signing": self.self_signing, "signed_devices": dict(self.signed_devices)}

    @classmethod
    def from_json(cls, user_id: str, data: Any) -> PublishedIdentity:
        if not isinstance(data, Mapping):
            return cls(user_id)
        master, ssk, devices = data.get("master"), data.get("self_signing"), data.get("signed_devices")
        return cls(
            user_id,
            master if isinstance(master, str) else None,
            ssk if isinstance(ssk, str) else None,
            {d: k for d, k in devices.items() if isinstance(d, str) and isinstance(k, str)}
            if isinstance(devices, Mapping)
            else {},
        )


def _dig(answer: Mapping[str, Any], section: str, user_id: str) -> Any:
    part = answer.get(section)
    return part.get(user_id) if isinstance(part, Mapping) else None


# --- the key store files --------------------------------------------------------------------------


def save_keys(store_dir: Path, keys: CrossSigningKeys, passphrase: str | None) -> None:
    """Write the private keys (0600); encrypted when a passphrase is set."""
    seeds = {usage: base64.b64encode(getattr(keys, usage).seed).decode() for usage in USAGES}
    public = {usage: getattr(keys, usage).public for usage in USAGES}
    document: dict[str, Any] = {"version": 1, "user_id": keys.user_id, "public": public}
    if passphrase:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
        cipher = AESGCM(_derive(passphrase, salt))
        plaintext = json.dumps(seeds, sort_keys=True).encode()
        document["private"] = {
            "encryption": "scrypt+aes-256-gcm",
            "scrypt": {**_SCRYPT, "salt": base64.b64encode(salt).decode()},
            "nonce": base64.b64encode(nonce).decode(),
            # The public keys are authenticated too: a swapped file cannot pass as ours.
            "ciphertext": base64.b64encode(cipher.encrypt(nonce, plaintext, _aad(keys.user_id, public))).decode(),
        }
    else:
        # No passphrase: the same protection as nio's own store without one (file mode).
        document["private"] = {"encryption": "none", "seeds": seeds}
    write_private_json(store_dir / KEYS_FILE, document)


def load_keys(store_dir: Path, user_id: str, passphrase: str | None) -> CrossSigningKeys | None:
    """The bot's private keys for `user_id`, or None when the store has none for it."""
    path = store_dir / KEYS_FILE
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise CrossSigningError(f"cannot read {KEYS_FILE} in the key store ({type(exc).__name__})") from None
    if not isinstance(document, dict) or document.get("user_id") != user_id:
        return None
    try:
        public = {usage: str(document["public"][usage]) for usage in USAGES}
        private = document["private"]
        if private["encryption"] == "none":
            seeds = private["seeds"]
        elif private["encryption"] == "scrypt+aes-256-gcm":
            seeds = _decrypt(private, passphrase, user_id, public)
        else:
            raise CrossSigningError(f"{KEYS_FILE}: unknown encryption {private['encryption']!r}")
        keys = CrossSigningKeys(user_id, *(SigningKey(base64.b64decode(seeds[usage])) for usage in USAGES))
    except CrossSigningError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise CrossSigningError(f"{KEYS_FILE} in the key store is damaged ({type(exc).__name__})") from None
    if any(getattr(keys, usage).public != public[usage] for usage in USAGES):
        raise CrossSigningError(f"{KEYS_FILE} in the key store is damaged (private and public keys disagree)")
    return keys


def _decrypt(private: Mapping[str, Any], passphrase: str | None, user_id: str, public: dict[str, str]) -> Any:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if not passphrase:
        raise CrossSigningError(f"{KEYS_FILE} in the key store is encrypted, but MATRIX_STORE_PASSPHRASE is not set")
    params = private["scrypt"]
    key = _derive(passphrase, base64.b64decode(params["salt"]), n=params["n"], r=params["r"], p=params["p"])
    try:
        plaintext = AESGCM(key).decrypt(
            base64.b64decode(private["nonce"]), base64.b64decode(private["ciphertext"]), _aad(user_id, public)
        )
    except InvalidTag:
        raise CrossSigningError(
            f"cannot decrypt {KEYS_FILE} in the key store: is MATRIX_STORE_PASSPHRASE the one it was written with?"
        ) from None
    return json.loads(plaintext)


def _derive(
    passphrase: str, salt: bytes, *, n: int = _SCRYPT["n"], r: int = _SCRYPT["r"], p: int = _SCRYPT["p"]
) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode())


def _aad(user_id: str, public: Mapping[str, str]) -> bytes:
    return json.dumps({"user_id": user_id, "public": dict(public)}, sort_keys=True).encode()
