"""`ALERT_SINK=matrix`: alerts as end-to-end-encrypted messages, through matrix-nio.

One delivery is one short-lived nio client (the bot is a 5-minute batch job, not a
long-running client), so the things a resident client keeps in memory live in
`store_dir` instead:

- nio's SQLite store `{user_id}_{device_id}.db` and trust files: the Olm account (the
  device's identity), Olm sessions, known devices, our own Megolm inbound sessions;
- `sync.json` (ours): the sync token and the users whose device lists we track, written
  together only once every device-list change of that sync has been queried. nio keeps
  neither the tracked users nor (usefully) the token, and without them every process
  would pay a `/keys/query`; with them a warm delivery is sync + to-device + send;
- `device.json` (ours, public values only): the identity this device published, so a
  lost key store is noticed instead of silently minting a second identity;
- `cross_signing_keys.json` and `identity.json` (ours, see crosssigning.py): the
  account's cross-signing identity (private keys, encrypted with the store passphrase
  when set) and what the bot knows about it (public values, for `status`).

Cross-signing (Element shows an unsigned sender with a red shield and, excluding insecure
devices, does not decrypt it): the first delivery by a device the bot has not signed yet
creates the account's identity if it has none, signs the device and reads the signature
back (+3 or 4 requests, once per device; again on each delivery while recipients cannot
see the signature: the self-check of issue 25). Other people's identities come with the
/keys/query answers nio asks for anyway and are kept in `sync.json`, so trust decisions
cost no request.

Cost of a warm delivery of n alerts: 1 sync (filtered to the alert room, full room state,
no timeline) + 1 to-device (a fresh Megolm room key: nio does not persist outbound
sessions) + n room sends; plus /keys/query when a member's devices changed, /keys/claim
for a device we have no Olm session with, and /keys/upload when one-time keys ran low.
Alerts marked attempted (perhaps already in the room) add one /messages request (up to
MESSAGES_PAGES when not found) and drop the sends that are found; new alerts add none.

One message per alert, not one batch: each alert's id is its Matrix transaction id, so a
retried alert is deduplicated by the homeserver individually and a failure in the middle
leaves exactly the undelivered alerts in the outbox. Batching would save a request per
extra alert but would make a half-delivered batch either duplicate or drop alerts.

nio is imported inside the methods: the package must import without it (cold start, and
cycles with nothing to send never touch Matrix).
"""

from .credentials import CREDENTIAL_FILES, LOGIN_HINT, MatrixCredentials
from .delivery import MESSAGES_PAGE, MESSAGES_PAGES
from .pictures import MEDIA_MEMORY, MediaMemory, picture_txn_id, send_picture
from .session import CrossSigningOutcome
from .sink import MatrixSink, PrimeReport
from .sync_state import DEVICE_MARKER, SYNC_STATE

__all__ = [
    "CREDENTIAL_FILES",
    "DEVICE_MARKER",
    "LOGIN_HINT",
    "MEDIA_MEMORY",
    "MESSAGES_PAGE",
    "MESSAGES_PAGES",
    "SYNC_STATE",
    "CrossSigningOutcome",
    "MatrixCredentials",
    "MatrixSink",
    "MediaMemory",
    "PrimeReport",
    "picture_txn_id",
    "send_picture",
]
