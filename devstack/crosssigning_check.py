"""Checks of a Matrix cross-signing chain made independently of the bot's own code, for the
tests: canonical JSON built with the standard library (the spec's definition) and ed25519
verified by vodozemac (Rust), where the bot signs with `canonicaljson` and `cryptography`
(OpenSSL). `keys_query` asks a homeserver what it publishes; `assert_chain` checks
device <- self-signing <- master on that answer."""

from __future__ import annotations

import json
from typing import Any

import httpx
import vodozemac

from devstack.synapse import Account, Homeserver


def spec_canonical_json(value: dict[str, Any]) -> bytes:
    """Canonical JSON as the spec defines it (sorted keys, no spaces, UTF-8)."""
    stripped = {k: v for k, v in value.items() if k not in ("signatures", "unsigned")}
    return json.dumps(stripped, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def signed_by(value: dict[str, Any], user_id: str, public_key: str) -> bool:
    signature = value.get("signatures", {}).get(user_id, {}).get(f"ed25519:{public_key}")
    if signature is None:
        return False
    try:
        vodozemac.Ed25519PublicKey.from_base64(public_key).verify_signature(
            spec_canonical_json(value), vodozemac.Ed25519Signature.from_base64(signature)
        )
    except vodozemac.SignatureException:
        return False
    return True


def only_key(key_object: dict[str, Any]) -> str:
    [(key_id, public)] = key_object["keys"].items()
    assert key_id == f"ed25519:{public}"
    assert "=" not in public and len(public) == 43  # unpadded base64 of 32 bytes
    return str(public)


def keys_query(homeserver: Homeserver, asker: Account, user_id: str) -> dict[str, Any]:
    response = httpx.post(
        f"{homeserver.url}/_matrix/client/v3/keys/query",
        json={"device_keys": {user_id: []}},
        headers={"Authorization": f"Bearer {asker.access_token}"},
        timeout=30,
    )
    response.raise_for_status()
    answer: dict[str, Any] = response.json()
    return answer


def assert_chain(answer: dict[str, Any], user_id: str, device_id: str) -> str:
    """device ← self-signing ← master, independently; returns the master key."""
    master_object = answer["master_keys"][user_id]
    ssk_object = answer["self_signing_keys"][user_id]
    master, ssk = only_key(master_object), only_key(ssk_object)
    assert master_object["usage"] == ["master"] and ssk_object["usage"] == ["self_signing"]
    assert signed_by(ssk_object, user_id, master)
    device = answer["device_keys"][user_id][device_id]
    assert signed_by(device, user_id, ssk)
    return master
