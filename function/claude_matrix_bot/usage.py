"""The Anthropic usage endpoint: one HTTP call and a tolerant parser (docs/design.md §2).

The endpoint is undocumented and grows new keys, so the parser is lenient about
what it does not know (unknown keys are ignored, but numbers under them are
reported) and strict about what it does (a bucket whose numbers are not sane
rejects the whole answer: alerting on a garbled reading is worse than one failed
cycle, which the health counter sees). Paid overage is secondary: garbled money
is reported and dropped, never a reason to lose the buckets.

What public clients of the endpoint recorded (read Dec 2026, GitHub threads):
- `limits[]` carries model-scoped weekly limits that have no legacy key; the legacy
  `seven_day_opus`/`seven_day_sonnet` are always null on those accounts
  (CodeZeno/Claude-Code-Usage-Monitor#56, Lcharvol/Claude-God#36). The scoped one is
  often the binding one: Fable at 100% `is_active: true` while the account-wide
  weekly read 61% (XueshiQiao/CCSwitcher#34), 88% vs 38% (eneskirca/nodeterm#6),
  69% vs 39% (diegosouzapw/OmniRoute#13962, where the legacy value wins when both
  name a model, as here).
- Entries are told apart by `kind`, not `group`: both weekly kinds share
  `group: "weekly"`, and keying on it let the scoped entry overwrite the
  account-wide one (Muddyblack/kde-ai-usage#14). `severity` is `normal`/`warning`.
- Money: `spend.used` = `{amount_minor, currency, exponent}`, `spend.limit`/`cap`/
  `balance` often null with `percent: 0`; `extra_usage` carries `used_credits`,
  `monthly_limit` (minor units: clients that showed them as dollars were off by 100,
  steipete/CodexBar#50, Blimp-Labs/claude-usage-bar#12), `currency`,
  `decimal_places`, and sometimes no `is_enabled` at all (Javis603/token-monitor#258,
  can1357/oh-my-pi#5575).

Every failure becomes one of the `UpstreamError` family at this boundary.
Messages never carry the access token; response bodies are quoted only for
non-2xx answers and only a short excerpt.
"""

from __future__ import annotations

import json
import logging
import math
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType

import httpx

from .errors import (
    BadResponse,
    Forbidden,
    RateLimited,
    ServerError,
    Unauthorized,
    UpstreamError,
    UpstreamTimeout,
)
from .httpclient import AnswerTooLarge, bounded_client, send_bounded
from .logs import Redactor
from .model import Reading
from .printable import may_hold_controls, printable, printable_json
from .url_policy import public_url
from .usage_parse import parse_usage, scope_slug

__all__ = [
    "DEFAULT_TIMEOUT",
    "OAUTH_BETA",
    "USAGE_PATH",
    "UsageClient",
    "excerpt",
    "parse_retry_after",
    "parse_usage",
    "scope_slug",
]

USAGE_PATH = "/api/oauth/usage"
BANKED_RESETS_QUERY = "?cedar_ember=1"
OAUTH_BETA = "oauth-2025-04-20"
DEFAULT_TIMEOUT = httpx.Timeout(10.0)
EXCERPT_CHARS = 200

log = logging.getLogger("claude_matrix_bot.usage")


def excerpt(response: httpx.Response, *secrets: str) -> str:
    """At most EXCERPT_CHARS of a non-2xx body, one line, with any secret blanked."""
    try:
        text = response.text
    except Exception:  # undecodable body: say so rather than fail while failing
        return "<undecodable body>"
    text = " ".join(printable(Redactor.of(*secrets, mask="<redacted>", min_chars=1)(text)).split())
    if not text:
        return "<empty body>"
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 3] + "..."


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """`Retry-After` as seconds: either delta-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - now).total_seconds(), 0.0)


def _looks_like_claude_code(user_agent: str) -> bool:
    return user_agent.startswith(("claude-cli/", "claude-code/"))


class UsageClient:
    """Reads the usage endpoint with an OAuth access token.

    Pass `client` (an `httpx.Client` you own) or `transport` to inject; otherwise
    the client creates and owns its own `httpx.Client`.
    """

    def __init__(
        self,
        base_url: str,
        user_agent: str,
        *,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
        banked_resets: bool = True,
    ) -> None:
        # The banked-reset block rides on the one usage request (docs/design.md §2): the same
        # rate limit, no second call.
        self.url = base_url.rstrip("/") + USAGE_PATH + (BANKED_RESETS_QUERY if banked_resets else "")
        self.shown_url = public_url(self.url)  # for messages: never a URL's user:password
        self.user_agent = user_agent
        self._owns_client = client is None
        self._client = client if client is not None else bounded_client(timeout, transport)
        self._timeout = timeout

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> UsageClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def fetch(self, access_token: str, now: datetime) -> Reading:
        """One GET of the usage endpoint, parsed; `now` stamps the reading."""
        headers = {
            "Authorization": f"Bearer {access_token}",
            "anthropic-beta": OAUTH_BETA,
            "User-Agent": self.user_agent,
            "Accept": "application/json",
        }
        try:
            request = self._client.build_request("GET", self.url, headers=headers, timeout=self._timeout)
            response = send_bounded(self._client, request)
        except AnswerTooLarge as exc:
            raise BadResponse(f"usage endpoint {self.shown_url}: {exc}, refused") from None
        except httpx.DecodingError as exc:
            raise BadResponse(f"usage endpoint {self.shown_url}: {exc}") from None
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"usage endpoint {self.shown_url} timed out ({type(exc).__name__})") from None
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise UpstreamTimeout(f"usage endpoint {self.shown_url} unreachable: {exc}") from None
        except httpx.HTTPError as exc:
            raise UpstreamError(f"usage endpoint {self.shown_url} failed: {type(exc).__name__}: {exc}") from None
        return self._interpret(response, access_token, now)

    def _interpret(self, response: httpx.Response, access_token: str, now: datetime) -> Reading:
        status = response.status_code
        if 200 <= status < 300:
            try:
                payload = json.loads(response.content)
                if may_hold_controls(response.content):  # escape sequences never reach a log or status
                    payload = printable_json(payload)
            except (ValueError, UnicodeDecodeError, RecursionError):
                kind = response.headers.get("content-type", "no content-type")
                raise BadResponse(
                    f"usage endpoint answered {status} with a body that is not JSON "
                    f"({kind}, {len(response.content)} bytes)",
                    status=status,
                ) from None
            reading = parse_usage(payload, now)
            if reading.unknown_numbers:
                # A changed endpoint is noticed the day it changes (docs/design.md §1); status lists them too.
                log.warning(
                    "usage answer carries numbers this release does not read: %s", ", ".join(reading.unknown_numbers)
                )
            return reading
        body = excerpt(response, access_token)
        if status == 401:
            raise Unauthorized(f"usage endpoint rejected the access token (401): {body}", status=401)
        if status == 403:
            raise Forbidden(
                "usage endpoint refused the token (403): it probably lacks the user:profile scope "
                "(a user:inference-only token is not enough); bootstrap the tokens again from a full "
                f"Claude Code login: {body}",
                status=403,
            )
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("retry-after"), now)
            hint = "" if retry_after is None else f"; retry after {retry_after:.0f}s"
            if not _looks_like_claude_code(self.user_agent):
                hint += (
                    f"; the endpoint answers persistent 429s unless the User-Agent looks like "
                    f"claude-cli/<version> (external, cli) (ANTHROPIC_USER_AGENT is {self.user_agent!r})"
                )
            raise RateLimited(f"usage endpoint rate-limited the call (429){hint}: {body}", retry_after=retry_after)
        if status >= 500:
            raise ServerError(f"usage endpoint failed ({status}): {body}", status=status)
        raise UpstreamError(f"usage endpoint answered {status}: {body}", status=status)
