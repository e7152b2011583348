"""`make image-test`: build the image from the Dockerfile as it is, and run every entry point
inside it, as 65532 on a read-only root, against the development stack on loopback.

    python -m scripts.image_test [--keep] [--trace]

How, on a machine with no container registry and no `podman run` (it cannot set rlimits):
- Debian's podman, buildah and debootstrap (installed with apt-get when missing, as root);
- the base the Dockerfile names cannot be pulled: a Debian bookworm root made by debootstrap
  (python3, python3-venv, python-is-python3, ca-certificates, and this machine's CA bundle)
  and imported with `podman import` stands in through `--build-arg PYTHON_IMAGE=…`; the root
  is cached as a tarball under `.image-test/` (gitignored), the slow part of a first run;
- `podman build --isolation=chroot`; then the image's root is mounted read-only
  (`podman image mount`) and each entry point runs in it with `unshare -m` and
  `chroot --userspec=65532:65532`, with a host folder bound as /tmp (scripts/_image_run.py).

It prints the image's size, what the largest parts of /opt/venv weigh, and the image's size on
the slim base the Dockerfile names: the layers above the stand-in base, measured, plus the slim
base's published size (SLIM_BASE_MB; the stand-in's own Python differs from it). With
`--trace`, every file the entry points open under /opt/venv is recorded (strace): what the
image ships that nothing opened is listed by size (how the pruning in the Dockerfile was chosen).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".image-test"
SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
BASE_TAG = "localhost/claude-matrix-bot-base:bookworm"
IMAGE_TAG = "localhost/claude-matrix-bot:image-test"
TOOLS = {"podman": "podman", "buildah": "buildah", "debootstrap": "debootstrap", "strace": "strace"}
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# python:3.11-slim-bookworm, linux/amd64, uncompressed as `docker images` shows it: published
# figures run from 125 to 155 MB; the upper one is taken.
SLIM_BASE_MB = 155
GOAL_MB = 450
MB = 1_000_000


def progress(message: str) -> None:
    print(f"image-test: {message}", file=sys.stderr, flush=True)


def run(argv: list[str], *, log: Path | None = None, timeout: float = 1800) -> str:
    """Run a command; its output goes to `log` when given. A failure names the command."""
    if log is None:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        code, stdout, output = done.returncode, done.stdout, done.stdout + done.stderr
    else:
        with log.open("w") as out:
            code = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False).returncode
        stdout = output = log.read_text(errors="replace")
    if code != 0:
        raise SystemExit(f"image-test: {' '.join(argv[:4])} … failed (exit {code}):\n{output[-3000:]}")
    return stdout


SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")


def ensure_tools() -> None:
    """podman, buildah, debootstrap (and strace for --trace) from Debian, when missing."""
    # debootstrap (and chroot, unshare) live in sbin, which a non-login root shell's PATH
    # may lack: then apt-get installs it and it is still not found.
    path = os.environ.get("PATH", "").split(os.pathsep)
    os.environ["PATH"] = os.pathsep.join(path + [d for d in SBIN_DIRS if d not in path])
    missing = [package for binary, package in TOOLS.items() if shutil.which(binary) is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise SystemExit(f"image-test: needs {', '.join(missing)} (apt-get install them as root)")
    progress(f"installing {' '.join(missing)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *missing]):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900, check=False)
        if done.returncode != 0:
            raise SystemExit(f"image-test: {' '.join(argv)} failed:\n{done.stderr[-2000:]}")


def debian_mirror() -> str:
    """The Debian archive apt uses here (deb822 `URIs:` or a one-line `deb` entry)."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        if not path.is_file() or not path.name.endswith((".list", ".sources")):
            continue
        uris: list[str] = re.findall(r"(?m)^(?:URIs:|deb)\s+(?:\[[^]]*\]\s+)?(\S+)", path.read_text(errors="replace"))
        for uri in uris:
            if uri.rstrip("/").endswith("/debian"):
                return uri.rstrip("/")
    return "http://deb.debian.org/debian"


def check_mirror(mirror: str) -> None:
    """debootstrap needs the suite's Release file: say so plainly when it cannot be reached."""
    import httpx

    url = f"{mirror}/dists/{SUITE}/Release"
    try:
        response = httpx.get(url, timeout=30, follow_redirects=True)
    except httpx.HTTPError as exc:
        raise SystemExit(f"image-test: the Debian mirror is unreachable ({url}: {exc})") from None
    if response.status_code != 200:
        raise SystemExit(f"image-test: the Debian mirror answered {response.status_code} for {url}")
    progress(f"Debian mirror {mirror} reachable")


def base_tarball() -> Path:
    """The stand-in base root as a tarball, made once with debootstrap and cached by what
    went into it (suite, packages, this machine's CA bundle)."""
    key = hashlib.sha256(f"{SUITE} {BASE_PACKAGES}".encode() + HOST_CA_BUNDLE.read_bytes()).hexdigest()[:16]
    tarball = CACHE / f"base-{SUITE}-{key}.tar"
    if tarball.exists():
        progress(f"stand-in base cached: {tarball.name}")
        return tarball
    mirror = debian_mirror()
    check_mirror(mirror)
    root = CACHE / "base-root"
    shutil.rmtree(root, ignore_errors=True)
    progress(f"debootstrap {SUITE} from {mirror} (a few minutes, cached afterwards)")
    started = time.monotonic()
    include = ",".join(BASE_PACKAGES)
    run(["debootstrap", "--variant=minbase", f"--include={include}", SUITE, str(root), mirror],
        log=CACHE / "debootstrap.log", timeout=2400)  # fmt: skip
    shutil.copyfile(HOST_CA_BUNDLE, root / "etc/ssl/certs/ca-certificates.crt")
    shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True)
    partial = tarball.with_suffix(".partial")
    run(["tar", "-C", str(root), "--numeric-owner", "-cf", str(partial), "."])
    partial.rename(tarball)
    for stale in CACHE.glob(f"base-{SUITE}-*.tar"):
        if stale != tarball:
            stale.unlink()
    shutil.rmtree(root)
    progress(f"stand-in base made in {time.monotonic() - started:.0f} s")
    return tarball


def import_base(tarball: Path) -> None:
    """`podman import` the stand-in base once per tarball (labelled with its name), so the
    build's layer cache, keyed on the base image, holds from one run to the next."""
    label = '{{index .Labels "org.claude-matrix-bot.image-test.base"}}'
    exists = subprocess.run(["podman", "image", "exists", BASE_TAG], check=False).returncode == 0
    if exists and run(["podman", "image", "inspect", "--format", label, BASE_TAG]).strip() == tarball.name:
        return
    changes = [
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "ENV LANG=C.UTF-8",
        f"LABEL org.claude-matrix-bot.image-test.base={tarball.name}",
    ]
    run(["podman", "import", *(f"--change={change}" for change in changes), str(tarball), BASE_TAG])


def build_image(tarball: Path) -> float:
    """Build the Dockerfile on the stand-in base; the build's wall time."""
    import_base(tarball)
    progress("building the Dockerfile (podman build --isolation=chroot)")
    started = time.monotonic()
    run(["podman", "build", "--isolation=chroot", "--pull=never", "--build-arg", f"PYTHON_IMAGE={BASE_TAG}",
         "-t", IMAGE_TAG, "-f", str(REPO / "Dockerfile"), str(REPO)], log=CACHE / "build.log")  # fmt: skip
    return time.monotonic() - started


def image_bytes(tag: str) -> int:
    return int(run(["podman", "image", "inspect", "--format", "{{.Size}}", tag]).strip())


def du(path: Path) -> int:
    """Bytes on disk under `path` (what the image layer holds)."""
    return int(run(["du", "-sb", str(path)]).split()[0])


def size_report(root: Path) -> tuple[int, list[str]]:
    """(the image's size on the slim base in bytes, the report's lines); the figures are
    also kept in .image-test/size.json for `make bench`'s image-size row."""
    image, base = image_bytes(IMAGE_TAG), image_bytes(BASE_TAG)
    venv = root / "opt/venv"
    git = ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]
    commit = subprocess.run(git, capture_output=True, text=True, check=False)
    figures = {
        "on_slim_mb": round((image - base) / MB + SLIM_BASE_MB, 1),
        "layers_mb": round((image - base) / MB, 1),
        "venv_mb": round(du(venv) / MB, 1),
        "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": commit.stdout.strip() or "unknown",
    }
    (CACHE / "size.json").write_text(json.dumps(figures, indent=1) + "\n")
    site = next(venv.glob("lib/python3*/site-packages"))
    parts = sorted(((du(p), p.name) for p in site.iterdir()), reverse=True)[:12]
    on_slim = image - base + SLIM_BASE_MB * MB
    lines = [
        f"image {image / MB:.0f} MB = stand-in base {base / MB:.0f} MB + layers {(image - base) / MB:.0f} MB",
        f"/opt/venv {du(venv) / MB:.0f} MB, /app {du(root / 'app') / MB:.2f} MB; largest in site-packages:",
        *(f"  {size / MB:6.1f} MB  {name}" for size, name in parts),
        f"on the slim base: layers {(image - base) / MB:.0f} MB + python:3.11-slim-bookworm {SLIM_BASE_MB} MB"
        f" = {on_slim / MB:.0f} MB (goal ≤ {GOAL_MB} MB)",
    ]
    return on_slim, lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="image-test", description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the run's /tmp folder (under .image-test/)")
    parser.add_argument("--trace", action="store_true", help="record what the entry points open under /opt/venv")
    args = parser.parse_args(argv)
    from scripts import _image_run

    CACHE.mkdir(exist_ok=True)
    ensure_tools()
    build_seconds = build_image(base_tarball())
    progress(f"built in {build_seconds:.0f} s")
    root = Path(run(["podman", "image", "mount", IMAGE_TAG]).strip())
    try:
        opened = _image_run.check_entry_points(root, run(["podman", "image", "inspect", IMAGE_TAG]), args)
        on_slim, lines = size_report(root)
        if args.trace:
            lines += _image_run.unopened_report(root, opened)
    finally:
        run(["podman", "image", "unmount", IMAGE_TAG])
    print("\n".join(["image-test: every entry point ran in the image", f"build {build_seconds:.0f} s", *lines]))
    if on_slim > GOAL_MB * MB:
        print(f"image-test: {on_slim / MB:.0f} MB on the slim base is over the {GOAL_MB} MB goal", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
