// One Element device for the Matrix tests: matrix-js-sdk with its Rust crypto
// (@matrix-org/matrix-sdk-crypto-wasm), the crypto stack Element Web runs.
//
// Driven by tests/element_recipient.py over stdin/stdout, one JSON object per line:
//   request  {"id": 1, "op": "login", ...}
//   answer   {"id": 1, "ok": true, "result": {...}}  or  {"id": 1, "ok": false, "error": "..."}
// Logs go to stderr only (matrix-js-sdk's own logger included), and never carry a
// token or a password: the test checks that.
import { Console } from "node:console";
import { createInterface } from "node:readline";

import * as RustSdkCryptoJs from "@matrix-org/matrix-sdk-crypto-wasm";
import * as sdk from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";
import {
    AllDevicesIsolationMode,
    EventShieldColour,
    EventShieldReason,
    OnlySignedDevicesIsolationMode,
} from "matrix-js-sdk/lib/crypto-api/index.js";

// stdout carries the answers only: every console line (the SDK logs through console)
// goes to stderr, and the SDK's per-request debug lines are turned off.
globalThis.console = new Console({ stdout: process.stderr, stderr: process.stderr });
logger.setLevel("warn");

let client = null;
let password = null;
let syncs = 0; // completed syncs, to wait for "everything sent before now has arrived"

const SYNCS_TO_SETTLE = 3;

function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

async function waitFor(what, predicate, timeoutMs = 30000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        const value = await predicate();
        if (value) return value;
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await sleep(100);
    }
}

async function settle() {
    // Two full syncs that started after this call: whatever the bot sent before the
    // command (room events, to-device room keys, device-list changes) has been seen,
    // and the key queries those syncs triggered have been answered.
    const target = syncs + SYNCS_TO_SETTLE;
    await waitFor(`${SYNCS_TO_SETTLE} syncs`, () => syncs >= target);
}

function isolationMode(name) {
    if (name === "only_signed") return new OnlySignedDevicesIsolationMode();
    if (name === "all") return new AllDevicesIsolationMode(false);
    throw new Error(`unknown isolation mode ${name}`);
}

async function serverRequest(method, path, body) {
    return client.http.authedRequest(method, path, undefined, body, { prefix: "/_matrix/client/v3" });
}

const ops = {
    // Log in a new device of an existing user, start Rust crypto and syncing, and wait
    // until the device's keys (device keys and one-time keys) are on the homeserver.
    async login({ homeserver, user_id, password: secret, isolation = "all" }) {
        password = secret;
        const anonymous = sdk.createClient({ baseUrl: homeserver });
        const login = await anonymous.loginRequest({
            type: "m.login.password",
            identifier: { type: "m.id.user", user: user_id },
            password: secret,
            initial_device_display_name: "Element (matrix-js-sdk test)",
        });
        client = sdk.createClient({
            baseUrl: homeserver,
            userId: login.user_id,
            deviceId: login.device_id,
            accessToken: login.access_token,
        });
        await client.initRustCrypto({ useIndexedDB: false });
        // initRustCrypto turns the Rust side's tracing on at debug level: warnings will do.
        new RustSdkCryptoJs.Tracing(RustSdkCryptoJs.LoggerLevel.Warn).turnOn();
        client.getCrypto().setDeviceIsolationMode(isolationMode(isolation));
        client.on(sdk.ClientEvent.Sync, (state) => {
            if (state === "SYNCING" || state === "PREPARED") syncs += 1;
        });
        await client.startClient({ pollTimeout: 500, initialSyncLimit: 50, lazyLoadMembers: false });
        await waitFor("the first sync", () => syncs > 0);
        const keys = await client.getCrypto().getOwnDeviceKeys();
        await waitFor("the device's keys on the homeserver", async () => {
            const query = await serverRequest("POST", "/keys/query", { device_keys: { [login.user_id]: [] } });
            const published = query.device_keys?.[login.user_id]?.[login.device_id];
            if (!published) return false;
            const counts = await serverRequest("POST", "/keys/upload", {});
            return (counts.one_time_key_counts?.signed_curve25519 ?? 0) > 0;
        });
        return {
            user_id: login.user_id,
            device_id: login.device_id,
            access_token: login.access_token,
            ed25519: keys.ed25519,
            curve25519: keys.curve25519,
        };
    },

    async set_isolation({ isolation }) {
        client.getCrypto().setDeviceIsolationMode(isolationMode(isolation));
        return {};
    },

    // What Element does on "Set up secure messaging": a cross-signing identity for
    // this user, this device signed by it. The password answers the UIA, if asked.
    async bootstrap_cross_signing() {
        const crypto = client.getCrypto();
        await crypto.bootstrapCrossSigning({
            setupNewCrossSigning: true,
            authUploadDeviceSigningKeys: async (makeRequest) => {
                try {
                    return await makeRequest(null);
                } catch (error) {
                    const session = error?.data?.session;
                    if (error?.httpStatus !== 401 || !session) throw error;
                    return makeRequest({
                        type: "m.login.password",
                        identifier: { type: "m.id.user", user: client.getUserId() },
                        password,
                        session,
                    });
                }
            },
        });
        await waitFor("cross-signing ready", () => crypto.isCrossSigningReady());
        const master = await crypto.getCrossSigningKeyId();
        return { master };
    },

    // Sign another device of this user with the self-signing key this device holds
    // (Element: "verify this session" from a verified one).
    async cross_sign_device({ device_id }) {
        const crypto = client.getCrypto();
        await waitFor(`device ${device_id} known`, async () => {
            const devices = await crypto.getUserDeviceInfo([client.getUserId()], true);
            return devices.get(client.getUserId())?.has(device_id);
        });
        await crypto.crossSignDevice(device_id);
        return {};
    },

    async create_room({ invite = [] }) {
        const { room_id } = await client.createRoom({
            name: "claude alerts (Element)",
            invite,
            initial_state: [
                { type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } },
            ],
        });
        await waitFor("the room in the sync", () => client.getRoom(room_id));
        return { room_id };
    },

    async invite({ room_id, user_id }) {
        await client.invite(room_id, user_id);
        return {};
    },

    async join({ room_id }) {
        await client.joinRoom(room_id);
        await settle();
        return {};
    },

    // How this device judges another device (Element's device list / shields).
    async device_status({ user_id, device_id }) {
        await settle();
        const status = await client.getCrypto().getDeviceVerificationStatus(user_id, device_id);
        if (!status) return { known: false };
        return {
            known: true,
            signed_by_owner: status.signedByOwner,
            cross_signing_verified: status.crossSigningVerified,
        };
    },

    // The room's messages from `sender`, as this device sees them now: decrypted (with
    // the shield Element would draw) or not (with the reason Element would give).
    async messages({ room_id, sender, count }) {
        await waitFor(`${count} event(s) from ${sender}`, async () => {
            const events = await roomEvents(room_id, sender);
            return events.length >= count;
        });
        await settle();
        const out = [];
        for (const event of await roomEvents(room_id, sender)) {
            await client.decryptEventIfNeeded(event);
            const entry = {
                event_id: event.getId(),
                decrypted: !event.isDecryptionFailure(),
                // The sending device, as the encrypted event names it (which of the bot's devices).
                sender_device: event.getWireContent().device_id ?? null,
            };
            if (entry.decrypted) {
                const content = event.getContent();
                entry.body = content.body;
                entry.formatted_body = content.formatted_body ?? null;
                entry.msgtype = content.msgtype ?? null;
                entry.mentions = content["m.mentions"] ?? null; // who it pings (MSC4210: only this does)
                if (content.msgtype === "m.image") {
                    // Encrypted media: `file` (url, key, iv, hashes) instead of a plain `url`.
                    entry.file = content.file ?? null;
                    entry.info = content.info ?? null;
                    entry.url = content.url ?? null;
                }
                const info = await client.getCrypto().getEncryptionInfoForEvent(event);
                entry.shield = info ? EventShieldColour[info.shieldColour] : null;
                entry.shield_reason =
                    info && info.shieldReason !== null ? EventShieldReason[info.shieldReason] : null;
            } else {
                entry.failure = event.decryptionFailureReason;
            }
            out.push(entry);
        }
        return { events: out };
    },

    // What Element does to show an encrypted image: download the ciphertext from the
    // authenticated media API, refuse it unless its sha256 is the one in `file.hashes`,
    // and decrypt it with AES-CTR (`file.key` is a JWK, `file.iv` the initial counter).
    // WebCrypto, not a helper of the bot's: an independent check of its encryption.
    async download_image({ file }) {
        if (file?.v !== "v2" || file.key?.alg !== "A256CTR") throw new Error(`unsupported encrypted file ${file?.v}`);
        const url = client.mxcUrlToHttp(file.url, undefined, undefined, undefined, false, true, true);
        if (!url) throw new Error(`not an mxc URL: ${file.url}`);
        const response = await fetch(url, { headers: { Authorization: `Bearer ${client.getAccessToken()}` } });
        if (!response.ok) throw new Error(`downloading ${file.url}: HTTP ${response.status}`);
        const ciphertext = new Uint8Array(await response.arrayBuffer());
        const ciphertextSha256 = unpaddedBase64(await crypto.subtle.digest("SHA-256", ciphertext));
        if (ciphertextSha256 !== file.hashes?.sha256?.replace(/=+$/, "")) {
            throw new Error("the ciphertext's sha256 is not the one in file.hashes: refusing to decrypt");
        }
        const key = await crypto.subtle.importKey("jwk", file.key, { name: "AES-CTR" }, false, ["decrypt"]);
        const counter = Buffer.from(file.iv, "base64");
        const plain = new Uint8Array(
            await crypto.subtle.decrypt({ name: "AES-CTR", counter, length: 64 }, key, ciphertext),
        );
        const sha256 = Buffer.from(await crypto.subtle.digest("SHA-256", plain)).toString("hex");
        return {
            ciphertext_sha256: ciphertextSha256,
            sha256,
            bytes: plain.byteLength,
            data: Buffer.from(plain).toString("base64"),
        };
    },

    async stop() {
        client?.stopClient();
        setImmediate(() => process.exit(0));
        return {};
    },
};

function unpaddedBase64(bytes) {
    return Buffer.from(bytes).toString("base64").replace(/=+$/, "");
}

// Fresh events from the server (not the live timeline), decrypted with the keys and
// device knowledge this device has right now.
async function roomEvents(roomId, sender) {
    const response = await client.createMessagesRequest(roomId, null, 200, sdk.Direction.Backward);
    // New MatrixEvent objects: the SDK's mapper would hand back the timeline's copies,
    // decrypted when they arrived, under whatever rules held then.
    return response.chunk
        .filter((raw) => raw.sender === sender && raw.type === "m.room.encrypted")
        .reverse()
        .map((raw) => new sdk.MatrixEvent({ ...raw, room_id: roomId }));
}

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
    if (!line.trim()) continue;
    const request = JSON.parse(line);
    const { id, op, ...args } = request;
    let answer;
    try {
        if (!(op in ops)) throw new Error(`unknown op ${op}`);
        answer = { id, ok: true, result: await ops[op](args) };
    } catch (error) {
        // Name the failure, never the request (it may hold the password).
        answer = { id, ok: false, error: `${error?.name ?? "Error"}: ${error?.message ?? error}` };
    }
    process.stderr.write(`[recipient] ${op} done at ${new Date().toISOString()}\n`);
    process.stdout.write(JSON.stringify(answer) + "\n");
}
client?.stopClient();
process.exit(0);
