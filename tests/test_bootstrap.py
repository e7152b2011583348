"""The shell scripts: bootstrap-local.sh with a fake Claude config and piped answers,
build-push.sh with a fake `docker` recording its argv, and shellcheck / bash -n on both."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BOOTSTRAP = REPO / "scripts" / "bootstrap-local.sh"
BUILD_PUSH = REPO / "scripts" / "build-push.sh"
SCRIPTS = [BOOTSTRAP, BUILD_PUSH]

ACCESS = "sk-ant-oat01-ACCESS-secret-value"
REFRESH = "sk-ant-ort01-REFRESH-secret-value"
MATRIX_TOKEN = "syt_bWF0cml4LXNlY3JldA_secret"
EXPIRES_MS = 1_999_999_999_000


# --- static checks ---------------------------------------------------------------------------


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_parses(script: Path) -> None:
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_is_shellcheck_clean(script: Path) -> None:
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is required (Debian package 'shellcheck')"
    result = subprocess.run([shellcheck, "--severity=style", str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_is_strict_and_executable(script: Path) -> None:
    assert "set -euo pipefail" in script.read_text()
    assert script.stat().st_mode & stat.S_IXUSR


# --- bootstrap-local.sh ----------------------------------------------------------------------


@dataclass
class Laptop:
    home: Path
    claude_dir: Path
    local: Path

    def run(self, answers: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        base = {"PATH": os.environ["PATH"], "HOME": str(self.home), "LOCAL_DIR": str(self.local)}
        return subprocess.run(
            ["bash", str(BOOTSTRAP), *args],
            input=answers,
            env={**base, **(env or {})},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


def _write_credentials(directory: Path, access: str = ACCESS, refresh: str = REFRESH) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    credentials = {
        "claudeAiOauth": {
            "accessToken": access,
            "refreshToken": refresh,
            "expiresAt": EXPIRES_MS,
            "scopes": ["user:inference", "user:profile"],
            "subscriptionType": "max",
        }
    }
    (directory / ".credentials.json").write_text(json.dumps(credentials))


@pytest.fixture
def laptop(tmp_path: Path) -> Laptop:
    home = tmp_path / "home"
    claude_dir = home / ".claude-bot"
    _write_credentials(claude_dir)
    return Laptop(home=home, claude_dir=claude_dir, local=tmp_path / "local")


ANSWERS = f"https://matrix.example.org/\n@bot:example.org\n{MATRIX_TOKEN}\nBOTDEVICE\n!alerts:example.org\n"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_bootstrap_writes_private_files_from_the_login_and_answers(laptop: Laptop) -> None:
    result = laptop.run(ANSWERS, str(laptop.claude_dir))
    assert result.returncode == 0, result.stderr
    tokens = laptop.local / "oauth-tokens"
    assert (tokens / "accessToken").read_text() == ACCESS
    assert (tokens / "refreshToken").read_text() == REFRESH
    assert (tokens / "expiresAt").read_text() == str(EXPIRES_MS)
    creds = laptop.local / "matrix-bot"
    assert (creds / "homeserver_url").read_text() == "https://matrix.example.org"
    assert (creds / "user_id").read_text() == "@bot:example.org"
    assert (creds / "access_token").read_text() == MATRIX_TOKEN
    assert (creds / "device_id").read_text() == "BOTDEVICE"
    env = (laptop.local / "env").read_text().splitlines()
    assert "MATRIX_ROOM_ID=!alerts:example.org" in env
    assert "LOCAL_MODE=1" in env
    for directory in (laptop.local, tokens, creds, laptop.local / "state"):
        assert _mode(directory) == 0o700, directory
    for file in [*tokens.iterdir(), *creds.iterdir(), laptop.local / "env"]:
        assert _mode(file) == 0o600, file
    assert sorted(p.name for p in tokens.iterdir()) == ["accessToken", "expiresAt", "refreshToken"]


def test_bootstrap_never_prints_a_token(laptop: Laptop) -> None:
    result = laptop.run(ANSWERS, str(laptop.claude_dir))
    assert result.returncode == 0, result.stderr
    for secret in (ACCESS, REFRESH, MATRIX_TOKEN):
        assert secret not in result.stdout
        assert secret not in result.stderr


def test_bootstrap_prints_the_docker_and_kubectl_recipes(laptop: Laptop) -> None:
    result = laptop.run(ANSWERS, str(laptop.claude_dir))
    assert "docker run" in result.stdout
    assert "claude-matrix-bot run" in result.stdout
    assert f"{laptop.local}/oauth-tokens:/var/run/secrets/oauth-tokens" in result.stdout
    assert "create secret generic claude-oauth-tokens" in result.stdout
    assert "create secret generic matrix-bot-creds" in result.stdout


def test_bootstrap_again_keeps_every_saved_value_on_enter(laptop: Laptop) -> None:
    assert laptop.run(ANSWERS, str(laptop.claude_dir)).returncode == 0
    before = {p.relative_to(laptop.local): p.read_bytes() for p in laptop.local.rglob("*") if p.is_file()}
    again = laptop.run("\n\n\n\n\n", str(laptop.claude_dir))
    assert again.returncode == 0, again.stderr
    after = {p.relative_to(laptop.local): p.read_bytes() for p in laptop.local.rglob("*") if p.is_file()}
    assert after == before
    # The defaults are offered, the saved token is not shown.
    assert MATRIX_TOKEN not in again.stdout + again.stderr


def test_bootstrap_again_with_no_input_at_all_keeps_values(laptop: Laptop) -> None:
    assert laptop.run(ANSWERS, str(laptop.claude_dir)).returncode == 0
    again = laptop.run("", str(laptop.claude_dir))
    assert again.returncode == 0, again.stderr
    assert (laptop.local / "matrix-bot" / "access_token").read_text() == MATRIX_TOKEN


def test_bootstrap_updates_a_changed_answer_and_the_refreshed_login(laptop: Laptop) -> None:
    assert laptop.run(ANSWERS, str(laptop.claude_dir)).returncode == 0
    _write_credentials(laptop.claude_dir, access="sk-ant-oat01-NEW", refresh="sk-ant-ort01-NEW")
    again = laptop.run("\n\n\nOTHERDEVICE\n\n", str(laptop.claude_dir))
    assert again.returncode == 0, again.stderr
    assert (laptop.local / "matrix-bot" / "device_id").read_text() == "OTHERDEVICE"
    assert (laptop.local / "oauth-tokens" / "refreshToken").read_text() == "sk-ant-ort01-NEW"


def test_bootstrap_asks_again_after_an_invalid_answer(laptop: Laptop) -> None:
    answers = (
        f"matrix.example.org\nhttps://matrix.example.org\nbot\n@bot:example.org\n{MATRIX_TOKEN}\nDEV\nroom\n!r:x.org\n"
    )
    result = laptop.run(answers, str(laptop.claude_dir))
    assert result.returncode == 0, result.stderr
    assert "not valid" in result.stderr
    assert (laptop.local / "matrix-bot" / "user_id").read_text() == "@bot:example.org"
    assert (laptop.local / "env").read_text().startswith("MATRIX_ROOM_ID=!r:x.org\n")


def test_bootstrap_fails_without_a_required_value(laptop: Laptop) -> None:
    result = laptop.run("", str(laptop.claude_dir))  # first run, nothing saved, no answers
    assert result.returncode != 0
    assert "Homeserver URL" in result.stderr


def test_bootstrap_reads_claude_config_dir_when_no_argument(laptop: Laptop, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    _write_credentials(other, access="sk-ant-oat01-FROM-ENV", refresh=REFRESH)
    result = laptop.run(ANSWERS, env={"CLAUDE_CONFIG_DIR": str(other)})
    assert result.returncode == 0, result.stderr
    assert (laptop.local / "oauth-tokens" / "accessToken").read_text() == "sk-ant-oat01-FROM-ENV"


def test_bootstrap_argument_wins_over_claude_config_dir(laptop: Laptop, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    _write_credentials(other, access="sk-ant-oat01-FROM-ENV", refresh=REFRESH)
    result = laptop.run(ANSWERS, str(laptop.claude_dir), env={"CLAUDE_CONFIG_DIR": str(other)})
    assert result.returncode == 0, result.stderr
    assert (laptop.local / "oauth-tokens" / "accessToken").read_text() == ACCESS


def test_bootstrap_defaults_to_home_claude_and_warns_about_sharing_the_login(laptop: Laptop) -> None:
    _write_credentials(laptop.home / ".claude")
    result = laptop.run(ANSWERS)
    assert result.returncode == 0, result.stderr
    assert "WARNING" in result.stderr
    assert "CLAUDE_CONFIG_DIR=~/.claude-bot claude" in result.stderr
    quiet = laptop.run(ANSWERS, str(laptop.claude_dir))
    assert "WARNING" not in quiet.stderr


def test_bootstrap_missing_login_says_how_to_make_one(laptop: Laptop, tmp_path: Path) -> None:
    result = laptop.run(ANSWERS, str(tmp_path / "nowhere"))
    assert result.returncode != 0
    assert ".credentials.json" in result.stderr
    assert "CLAUDE_CONFIG_DIR=~/.claude-bot claude" in result.stderr
    assert not (laptop.local / "oauth-tokens" / "accessToken").exists()


def test_bootstrap_malformed_login_fails_without_leaking_it(laptop: Laptop) -> None:
    (laptop.claude_dir / ".credentials.json").write_text(json.dumps({"claudeAiOauth": {"accessToken": ACCESS}}))
    result = laptop.run(ANSWERS, str(laptop.claude_dir))
    assert result.returncode != 0
    assert "refreshToken" in result.stderr
    assert ACCESS not in result.stdout + result.stderr


# --- build-push.sh with a fake docker --------------------------------------------------------


FAKE_DOCKER = """#!/usr/bin/env bash
# Records every invocation; answers `imagetools inspect --raw` with $FAKE_INDEX.
printf '%s\\n' "$*" >> "$FAKE_DOCKER_LOG"
if [[ "$1 $2 $3" == "buildx imagetools inspect" ]]; then
  cat "$FAKE_INDEX"
fi
"""


def _index(*platforms: str, attestations: bool = True) -> dict[str, object]:
    manifests: list[dict[str, object]] = []
    for platform in platforms:
        os_name, arch = platform.split("/")
        manifests.append({"digest": f"sha256:{arch}", "platform": {"os": os_name, "architecture": arch}})
        if attestations:
            manifests.append(
                {
                    "digest": f"sha256:att-{arch}",
                    "platform": {"os": "unknown", "architecture": "unknown"},
                    "annotations": {"vnd.docker.reference.type": "attestation-manifest"},
                }
            )
    return {"mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests}


@dataclass
class FakeDocker:
    bin_dir: Path
    log: Path
    index: Path

    def answer(self, index: dict[str, object]) -> None:
        self.index.write_text(json.dumps(index))

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        base = {
            "PATH": f"{self.bin_dir}:{os.environ['PATH']}",
            "FAKE_DOCKER_LOG": str(self.log),
            "FAKE_INDEX": str(self.index),
        }
        return subprocess.run(
            ["bash", str(BUILD_PUSH), *args],
            env={**base, **(env or {})},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


@pytest.fixture
def fake_docker(tmp_path: Path) -> FakeDocker:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(FAKE_DOCKER)
    docker.chmod(0o755)
    fake = FakeDocker(bin_dir=bin_dir, log=tmp_path / "docker.log", index=tmp_path / "index.json")
    fake.answer(_index("linux/amd64", "linux/arm64"))
    return fake


def _manifest_tag() -> str:
    component = yaml.safe_load((REPO / "deploy" / "components" / "common" / "kustomization.yaml").read_text())
    return str(component["images"][0]["newTag"])


def test_build_push_builds_multi_arch_with_provenance_and_verifies(fake_docker: FakeDocker) -> None:
    result = fake_docker.run("registry.example.org/me/claude-matrix-bot")
    assert result.returncode == 0, result.stderr
    image = f"registry.example.org/me/claude-matrix-bot:{_manifest_tag()}"
    assert result.stdout.strip() == image
    build, inspect = fake_docker.calls()
    argv = build.split()
    assert argv[:2] == ["buildx", "build"]
    assert argv[argv.index("--platform") + 1] == "linux/amd64,linux/arm64"
    assert {"--provenance=true", "--sbom=true", "--push"} <= set(argv)
    assert argv[argv.index("--tag") + 1] == image
    assert argv[-1] == str(REPO)
    assert inspect == f"buildx imagetools inspect --raw {image}"


def test_build_push_takes_the_repository_from_the_environment(fake_docker: FakeDocker) -> None:
    result = fake_docker.run(env={"IMAGE_REPOSITORY": "ghcr.io/someone/cmb"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"ghcr.io/someone/cmb:{_manifest_tag()}"
    assert "images[0].newName" in result.stderr  # reminds to point the manifests at it


def test_build_push_refuses_the_placeholder_owner(fake_docker: FakeDocker) -> None:
    result = fake_docker.run()
    assert result.returncode != 0
    assert "OWNER" in result.stderr
    assert fake_docker.calls() == []


def test_build_push_fails_when_a_platform_is_missing_from_the_pushed_index(fake_docker: FakeDocker) -> None:
    fake_docker.answer(_index("linux/amd64"))
    result = fake_docker.run("registry.example.org/me/cmb")
    assert result.returncode != 0
    assert "linux/arm64" in result.stderr


def test_build_push_fails_without_attestations(fake_docker: FakeDocker) -> None:
    fake_docker.answer(_index("linux/amd64", "linux/arm64", attestations=False))
    result = fake_docker.run("registry.example.org/me/cmb")
    assert result.returncode != 0
    assert "attestation" in result.stderr


def test_build_push_honours_platforms(fake_docker: FakeDocker) -> None:
    fake_docker.answer(_index("linux/arm64"))
    result = fake_docker.run("registry.example.org/me/cmb", env={"PLATFORMS": "linux/arm64"})
    assert result.returncode == 0, result.stderr
    argv = fake_docker.calls()[0].split()
    assert argv[argv.index("--platform") + 1] == "linux/arm64"


# --- several accounts (docs/design.md §6) ------------------------------------------------------------


@pytest.fixture
def two_logins(laptop: Laptop) -> Laptop:
    _write_credentials(laptop.home / ".claude-work", access="sk-ant-oat01-WORK-secret", refresh="sk-ant-ort01-WORK-r")
    _write_credentials(laptop.home / ".claude-priv", access="sk-ant-oat01-PRIV-secret", refresh="sk-ant-ort01-PRIV-r")
    return laptop


def test_bootstrap_collects_several_logins_one_directory_each(two_logins: Laptop) -> None:
    # The tilde is passed quoted: the script expands it itself, as for work=~/.claude-work typed unquoted.
    result = two_logins.run(ANSWERS, "work=~/.claude-work", f"priv={two_logins.home / '.claude-priv'}")
    assert result.returncode == 0, result.stderr
    tokens = two_logins.local / "oauth-tokens"
    assert (tokens / "work" / "accessToken").read_text() == "sk-ant-oat01-WORK-secret"
    assert (tokens / "work" / "refreshToken").read_text() == "sk-ant-ort01-WORK-r"
    assert (tokens / "priv" / "accessToken").read_text() == "sk-ant-oat01-PRIV-secret"
    assert (tokens / "priv" / "expiresAt").read_text() == str(EXPIRES_MS)
    assert not (tokens / "accessToken").exists(), "no single-account files beside the account directories"
    for directory in (tokens / "work", tokens / "priv"):
        assert _mode(directory) == 0o700
        assert all(_mode(f) == 0o600 for f in directory.iterdir())
    env = (two_logins.local / "env").read_text().splitlines()
    assert "ACCOUNTS=work,priv" in env
    assert "LOCAL_MODE=1" in env
    # The one Secret holds every account's keys under <name>.<key>.
    for name in ("work", "priv"):
        for key in ("accessToken", "refreshToken", "expiresAt"):
            assert f"--from-file={name}.{key}={tokens}/{name}/{key}" in result.stdout
    assert "ACCOUNTS=work,priv in deploy/base/config.env" in result.stdout
    for secret in ("sk-ant-oat01-WORK-secret", "sk-ant-ort01-PRIV-r", MATRIX_TOKEN):
        assert secret not in result.stdout + result.stderr


def test_bootstrap_with_one_login_has_no_accounts(laptop: Laptop) -> None:
    result = laptop.run(ANSWERS, str(laptop.claude_dir))
    assert result.returncode == 0, result.stderr
    assert not any(line.startswith("ACCOUNTS=") for line in (laptop.local / "env").read_text().splitlines())
    assert f"--from-file={laptop.local}/oauth-tokens\n" in result.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("Work=~/.claude-work",), "account name 'Work'"),
        (("work=~/.claude-work", "work=~/.claude-priv"), "named twice"),
        (("work=~/.claude-work", "~/.claude-priv"), "NAME=CLAUDE_CONFIG_DIR"),
        (("nio=~/.claude-work",), "reserved"),
        (("work=~/.claude-work", "priv=~/.claude-work"), "the same login"),
        (("work=~/.claude-work", "priv=~/.claude-nowhere"), "no Claude login for account priv"),
    ],
)
def test_bootstrap_refuses_bad_account_arguments_before_writing(
    two_logins: Laptop, args: tuple[str, ...], needle: str
) -> None:
    result = two_logins.run(ANSWERS, *args)
    assert result.returncode != 0
    assert needle in result.stderr
    assert not (two_logins.local / "oauth-tokens").exists(), "nothing written before every argument is checked"
