"""The entry points of the built image, run inside its mounted root (scripts/image_test.py).

Each command runs as `unshare -m` + `chroot --userspec=65532:65532` into the image's root,
remounted read-only in that mount namespace, with the host's /dev and a fresh /proc, a host
folder bound as /tmp, the image's own environment (`podman image inspect`: PATH, HOME=/tmp,
PYTHONDONTWRITEBYTECODE, …) and working directory, on the host's loopback. The development
stack runs on the host: the fake Anthropic API and a throwaway Synapse (devstack/).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from devstack.fakes.anthropic import FakeAnthropic
from devstack.payloads import payload
from devstack.stack import Stack
from devstack.synapse import Homeserver, free_port

NONROOT = "65532:65532"
INSIDE_TMP = "/tmp"  # noqa: S108 - the image's /tmp, a host folder bound there
HOUR = timedelta(hours=1)
MB = 1_000_000
BUCKET = "image-test"
S3_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}
# Namespace set-up, then the command: $1 the image's root, $2 the folder bound as /tmp.
ENTER = (
    'set -e; R="$1"; W="$2"; shift 2; '
    'mount -o remount,bind,ro "$R"; '
    'mount --rbind /dev "$R/dev"; mount -t proc proc "$R/proc"; mount --bind "$W" "$R/tmp"; '
    f'exec chroot --userspec={NONROOT} "$R" "$@"'
)


@dataclass
class Image:
    """The mounted image, its configuration, the host folder seen as /tmp inside it."""

    root: Path
    env: dict[str, str]
    workdir: str
    cmd: list[str]
    tmp: Path
    trace: bool = False
    traces: list[Path] = field(default_factory=list)

    @classmethod
    def from_inspect(cls, root: Path, inspect_json: str, tmp: Path, *, trace: bool) -> Image:
        config = json.loads(inspect_json)[0]["Config"]
        env = dict(item.split("=", 1) for item in config.get("Env") or [])
        return cls(root, env, config.get("WorkingDir") or "/", list(config.get("Cmd") or []), tmp, trace)

    def inside(self, host_path: Path) -> str:
        """A host path under the bound folder, as the image sees it."""
        return f"{INSIDE_TMP}/{host_path.relative_to(self.tmp)}"

    def argv(self, command: list[str], env: dict[str, str]) -> list[str]:
        values = [f"{k}={v}" for k, v in {**self.env, **env}.items()]
        argv = ["unshare", "-m", "sh", "-c", ENTER, "enter", str(self.root), str(self.tmp)]
        argv += ["env", "-i", "-C", self.workdir, *values, *command]
        if self.trace:
            log = self.tmp.parent / f"trace-{len(self.traces)}.log"
            self.traces.append(log)
            argv = ["strace", "-f", "-qq", "-e", "trace=open,openat", "-o", str(log), *argv]
        return argv

    def run(self, command: list[str], env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
        subprocess.run(["chown", "-R", NONROOT, str(self.tmp)], check=True)
        argv = self.argv(command, env)
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)

    def start(self, command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        subprocess.run(["chown", "-R", NONROOT, str(self.tmp)], check=True)
        with log.open("wb") as out:
            argv = self.argv(command, env)
            return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def expect(done: subprocess.CompletedProcess[str], what: str, *needles: str) -> str:
    """The command's stdout, when it exited 0 and printed every needle; else a clear failure."""
    missing = [n for n in needles if n not in done.stdout]
    if done.returncode != 0 or missing:
        raise SystemExit(
            f"image-test: {what} failed (exit {done.returncode}, missing {missing}):\n"
            f"stdout: {done.stdout[-2000:]}\nstderr: {done.stderr[-3000:]}"
        )
    print(f"  ok  {what}", flush=True)
    return done.stdout


def alerts(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def stdout_cycles(image: Image, anthropic: FakeAnthropic) -> dict[str, str]:
    """Three `claude-matrix-bot run` cycles with the stdout sink on a simulated clock: armed,
    a threshold crossed, then the weekly window's digest, whose chart the drawing child
    (`python -OO -m claude_matrix_bot.chart_drawing`) draws."""
    folder = image.tmp / "stdout"
    anthropic.write_tokens_dir(folder / "tokens")
    env = {
        "LOCAL_MODE": "1",
        "ALERT_SINK": "stdout",
        "STATE_URL": "file://" + image.inside(folder / "state"),
        "OAUTH_TOKENS_DIR": image.inside(folder / "tokens"),
        "ANTHROPIC_BASE_URL": anthropic.base_url,
        "ANTHROPIC_TOKEN_URL": anthropic.token_url,
    }
    start = (datetime.now(UTC) + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    reset = start + 6 * HOUR
    readings = ((start, 10.0, reset), (start + 3 * HOUR, 60.0, reset), (reset + HOUR / 12, 0.5, reset + 168 * HOUR))
    kinds = []
    for now, week, resets_at in readings:
        anthropic.set_usage(payload(weekly={"seven_day": (week, resets_at)}))
        done = image.run(["claude-matrix-bot", "run"], {**env, "NOW_OVERRIDE": now.isoformat()})
        printed = alerts(expect(done, f"claude-matrix-bot run (stdout sink) at {now:%a %H:%M}"))
        kinds += [(a["kind"], a.get("image_bytes")) for a in printed]
    drawn = [size for kind, size in kinds if kind == "digest"]
    if [k for k, _ in kinds] != ["armed", "threshold", "digest"] or not (drawn[0] or 0) > 10_000:
        raise SystemExit(f"image-test: the stdout cycles printed {kinds}, not armed, threshold, a drawn digest")
    print(f"  ok  the drawing child drew the digest's chart ({drawn[0]} bytes of PNG)", flush=True)
    expect(image.run(["claude-matrix-bot", "status"], env), "claude-matrix-bot status", "seven_day")
    return env


def matrix_cycle(image: Image, homeserver: Homeserver, anthropic: FakeAnthropic) -> None:
    """One cycle with the Matrix sink: its alert arrives, decrypted, in the user's room."""
    folder = image.tmp / "matrix"
    stack = Stack.build(folder, homeserver, anthropic, unique=True)
    try:
        anthropic.set_usage(payload(weekly={"seven_day": (10.0, datetime.now(UTC) + 100 * HOUR)}))
        env = {k: v.replace(str(image.tmp), INSIDE_TMP) for k, v in stack.env().items()}
        expect(image.run(["claude-matrix-bot", "run"], env), "claude-matrix-bot run (Matrix sink)")
        deadline = time.monotonic() + 30
        while not (bodies := stack.recipient.history(stack.room_id).bodies()) and time.monotonic() < deadline:
            time.sleep(0.5)
        if not bodies:
            raise SystemExit("image-test: the Matrix cycle's alert never reached the room decrypted")
        print(f"  ok  the room shows it decrypted: {bodies[0].splitlines()[0][:60]!r}", flush=True)
    finally:
        stack.close()


@contextmanager
def storage_servers() -> Iterator[tuple[str, str]]:
    """moto's S3 server (bucket `image-test`) and the GCS emulator (the same): their URLs."""
    import boto3
    from gcp_storage_emulator.server import create_server
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_request(self, *args: Any, **kwargs: Any) -> None:
            pass

    logging.getLogger("gcp_storage_emulator").setLevel(logging.CRITICAL)  # "Resource not found" is expected
    app = DomainDispatcherApplication(create_backend_app)
    s3 = make_server("127.0.0.1", 0, app, threaded=True, request_handler=Quiet)
    threading.Thread(target=s3.serve_forever, name="moto-s3", daemon=True).start()
    s3_url = f"http://127.0.0.1:{s3.server_port}"
    boto3.client("s3", endpoint_url=s3_url, **S3_CREDENTIALS).create_bucket(Bucket=BUCKET)  # type: ignore[call-overload]
    gcs = create_server("127.0.0.1", 0, in_memory=True, default_bucket=BUCKET)
    gcs.start()
    try:
        yield s3_url, f"http://127.0.0.1:{gcs._api._httpd.server_address[1]}"  # no accessor for the port
    finally:
        gcs.stop()
        s3.shutdown()
        s3.server_close()


def store_cycles(image: Image, env: dict[str, str]) -> None:
    """A cycle with its state in S3 (moto's server) and one in GCS (the emulator): boto3 and
    google-cloud-storage as the image ships them (the Dockerfile prunes both)."""
    with storage_servers() as (s3, gcs):
        keys = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
        aws = dict(zip(keys, S3_CREDENTIALS.values(), strict=True))
        stores = {
            "S3 (moto)": {**aws, "AWS_ENDPOINT_URL_S3": s3, "STATE_URL": f"s3://{BUCKET}/image"},
            "GCS (emulator)": {"STORAGE_EMULATOR_HOST": gcs, "STATE_URL": f"gs://{BUCKET}/image"},
        }
        for name, store in stores.items():
            done = image.run(["claude-matrix-bot", "run"], {**env, **store})
            if [a["kind"] for a in alerts(expect(done, f"claude-matrix-bot run, state in {name}"))] != ["armed"]:
                raise SystemExit(f"image-test: the cycle with its state in {name} printed {done.stdout!r}")


def secret_cycle(image: Image, anthropic: FakeAnthropic, env: dict[str, str]) -> None:
    """A cycle outside LOCAL_MODE: the tokens in a Kubernetes Secret (the fake API server,
    through a kubeconfig), refreshed and written back through the API."""
    from devstack.fakes.kube_apiserver import FakeKubeApiServer, write_kubeconfig

    with FakeKubeApiServer() as kube:
        issued = anthropic.issue_tokens(expires_in=60)  # due for a refresh
        tokens = {"accessToken": issued.access_token, "refreshToken": issued.refresh_token}
        kube.put_secret({**tokens, "expiresAt": str(issued.expires_at_ms)})
        folder = image.tmp / "secret"
        folder.mkdir()
        secret_env = {k: v for k, v in env.items() if k not in {"LOCAL_MODE", "OAUTH_TOKENS_DIR"}}
        secret_env |= {
            "STATE_URL": "file://" + image.inside(folder / "state"),
            "K8S_OAUTH_SECRET_NAME": kube.secret_name,
            "K8S_NAMESPACE": kube.namespace,
            "KUBECONFIG": image.inside(write_kubeconfig(kube, folder / "kubeconfig")),
        }
        expect(image.run(["claude-matrix-bot", "run"], secret_env), "claude-matrix-bot run, tokens in a Secret")
        if kube.secret_data()["refreshToken"] == issued.refresh_token:
            raise SystemExit("image-test: the refreshed tokens were not written back to the Secret")


def http_function(image: Image, env: dict[str, str]) -> None:
    """The image's CMD (functions-framework's app on gunicorn) answering POST / and GET /; then the shim."""
    port, token = free_port(), uuid.uuid4().hex
    url = f"http://127.0.0.1:{port}"
    server_env = {**env, "PORT": str(port), "TRIGGER_TOKEN": token}
    server = image.start([*image.cmd, "--host", "127.0.0.1"], server_env, image.tmp.parent / "function.log")
    try:
        auth = {"Authorization": f"Bearer {token}"}
        wait_for(url, auth, server, image.tmp.parent / "function.log")
        unauthenticated = httpx.get(url + "/", timeout=30).status_code
        posted = httpx.post(url + "/", headers=auth, timeout=120)
        status = httpx.get(url + "/", headers=auth, timeout=30)
        if unauthenticated != 401 or posted.status_code not in {200, 429} or status.status_code != 200:
            raise SystemExit(
                f"image-test: the function answered {unauthenticated}, {posted.status_code}: {posted.text}"
            )
        print(f"  ok  the CMD: POST / {posted.status_code}, GET / 200, no token 401", flush=True)
        shim_env = {"FUNCTION_URL": url + "/", "TRIGGER_TOKEN": token, "SHIM_MAX_ATTEMPTS": "1"}
        done = image.run(["claude-matrix-bot-trigger"], shim_env)
        if token in done.stdout + done.stderr:
            raise SystemExit("image-test: the shim printed its token")
        expect(done, "claude-matrix-bot-trigger (the shim) against it")
    finally:
        with suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def wait_for(url: str, auth: dict[str, str], server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"image-test: functions-framework exited:\n{log.read_text(errors='replace')[-3000:]}")
        with suppress(httpx.TransportError):
            if httpx.get(url + "/", headers=auth, timeout=5).status_code == 200:
                return
        time.sleep(0.2)
    raise SystemExit(f"image-test: functions-framework did not answer:\n{log.read_text(errors='replace')[-3000:]}")


def matrix_login(image: Image, homeserver: Homeserver) -> None:
    """`matrix-login`: a dedicated device and its published cross-signing identity."""
    localpart = f"login-{uuid.uuid4().hex[:8]}"
    account = homeserver.register(localpart)
    folder = image.tmp / "login"
    folder.mkdir()
    (folder / "password").write_text(account.password + "\n")
    (folder / "password").chmod(0o600)
    env = {
        "MATRIX_CREDS_DIR": image.inside(folder / "creds"),
        "STATE_URL": "file://" + image.inside(folder / "state"),
        "MATRIX_PASSWORD_FILE": image.inside(folder / "password"),
        "MATRIX_STORE_PASSPHRASE": uuid.uuid4().hex,
    }
    argv = ["claude-matrix-bot", "matrix-login", "--homeserver", homeserver.url, "--user", localpart]
    out = expect(image.run(argv, env), "claude-matrix-bot matrix-login", "master key:")
    if account.password in out:
        raise SystemExit("image-test: matrix-login printed the password")


def check_entry_points(root: Path, inspect_json: str, args: argparse.Namespace) -> set[str]:
    """Every entry point, in the image; the files they opened under /opt/venv (with --trace)."""
    from scripts.image_test import CACHE

    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=CACHE))
    (run_dir / "tmp").mkdir()
    image = Image.from_inspect(root, inspect_json, run_dir / "tmp", trace=args.trace)
    with ExitStack() as stack:
        homeserver = Homeserver(run_dir / "synapse")
        homeserver.start()
        stack.callback(homeserver.stop)
        anthropic = stack.enter_context(FakeAnthropic(expires_in=30 * 86400))
        env = stdout_cycles(image, anthropic)
        store_cycles(image, env)
        secret_cycle(image, anthropic, env)
        matrix_cycle(image, homeserver, anthropic)
        http_function(image, env)
        matrix_login(image, homeserver)
    opened = opened_files(image.traces)
    if not args.keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    return opened


def opened_files(traces: list[Path]) -> set[str]:
    found: set[str] = set()
    for trace in traces:
        text = trace.read_text(errors="replace")
        paths = re.findall(r'open(?:at)?\([^"]*"(/opt/venv/[^"]+)"[^)]*\)\s+=\s+\d+', text)
        found.update(os.path.normpath(path) for path in paths)  # numpy/../numpy.libs/…
    return found


def unopened_report(root: Path, opened: set[str]) -> list[str]:
    """What the entry points never opened under site-packages, largest first (two levels)."""
    site = next((root / "opt/venv").glob("lib/python3*/site-packages"))
    inside = "/" + str(site.relative_to(root))
    used = Counter(path.removeprefix(inside + "/").split("/")[0] for path in opened if path.startswith(inside))
    unused: list[tuple[int, str]] = []
    for top in site.iterdir():
        candidates = [top] if top.name not in used or not top.is_dir() else list(top.iterdir())
        for path in candidates:
            relative = str(path.relative_to(site))
            if not any(p.startswith(f"{inside}/{relative}") for p in opened):
                unused.append((sum(f.stat().st_size for f in _files(path)), relative))
    unused.sort(reverse=True)
    lines = [f"never opened by any entry point ({len(opened)} files opened under /opt/venv), largest:"]
    return lines + [f"  {size / MB:6.1f} MB  {name}" for size, name in unused[:25] if size > 0.3 * MB]


def _files(path: Path) -> list[Path]:
    if path.is_symlink() or path.is_file():
        return [path] if path.is_file() else []
    return [p for p in path.rglob("*") if p.is_file() and not p.is_symlink()]
