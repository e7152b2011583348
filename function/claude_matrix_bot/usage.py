"""The Anthropic usage endpoint: one HTTP call and a tolerant parser (DESIGN §2).

The endpoint is undocumented and grows new keys, so the parser is lenient about
what it does not know (unknown keys are ignored) and strict about what it does
(a bucket whose numbers are not sane rejects the whole answer: alerting on a
garbled reading is worse than one failed cycle, which the health counter sees).

Every failure becomes one of the `UpstreamError` family at this boundary.
Messages never carry the access token; response bodies are quoted only for
non-2xx answers and only a short excerpt.
"""

from __future__ import annotations

import json
import math
import re
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
from .model import BucketReading, Reading

USAGE_PATH = "/api/oauth/usage"
OAUTH_BETA = "oauth-2025-04-20"
DEFAULT_TIMEOUT = httpx.Timeout(10.0)
EXCERPT_CHARS = 200

# Slightly outside 0-100 is rounding on the server side and is clamped; beyond
# these bounds the number cannot be a percentage and the answer is refused.
_UTILIZATION_FLOOR = -1.0
_UTILIZATION_CEILING = 1000.0

# Buckets are named after their window (`five_hour`, `seven_day`, `seven_day_opus`,
# `seven_day_cowork`, ...). Other keys are not buckets even when they carry a
# `utilization`: `extra_usage` has one (percent of a monthly credit limit, or
# null), and treating it as a window would invent resets and thresholds.
_BUCKET_NAME = re.compile(r"^[a-z0-9]+_(?:hour|hours|day|days|week|weeks|month|months)(?:_[a-z0-9_]+)?$")


def _name(key: str) -> str:
    """A bucket name fit for an error message (keys come from the response)."""
    return repr(key if len(key) <= 60 else key[:57] + "...")


def _resets_at(bucket: str, value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadResponse(f"bucket {_name(bucket)}: resets_at is a {type(value).__name__}, not an ISO-8601 string")
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadResponse(f"bucket {_name(bucket)}: resets_at is not an ISO-8601 instant") from None
    if moment.tzinfo is None:
        # The API always sends an offset; a bare time is most plausibly UTC.
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # e.g. year 1 with a positive offset falls off the calendar
        raise BadResponse(f"bucket {_name(bucket)}: resets_at is out of range") from None


def _utilization(bucket: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadResponse(f"bucket {_name(bucket)}: utilization is a {type(value).__name__}, not a number")
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        raise BadResponse(f"bucket {_name(bucket)}: utilization is not a percentage") from None
    if math.isnan(number) or not _UTILIZATION_FLOOR <= number <= _UTILIZATION_CEILING:
        raise BadResponse(f"bucket {_name(bucket)}: utilization {number!r} is not a percentage")
    return min(max(number, 0.0), 100.0)


def parse_usage(payload: object, taken_at: datetime) -> Reading:
    """Turn the decoded JSON of the usage endpoint into a `Reading`.

    Buckets are the top-level keys named like a window (`five_hour`, `seven_day*`)
    whose value is an object with a `utilization` (a percent). `null` buckets (or
    `utilization: null`) go to `null_buckets`; every other key is ignored.
    Raises `BadResponse` for a non-object, for an answer with no bucket at all,
    and for a bucket whose `utilization` or `resets_at` is not sane.
    """
    if not isinstance(payload, dict):
        raise BadResponse(f"usage answer is a JSON {type(payload).__name__}, not an object")
    buckets: dict[str, BucketReading] = {}
    null_buckets: list[str] = []
    for key, value in payload.items():
        if not isinstance(key, str) or not _BUCKET_NAME.match(key):
            continue  # extra_usage, limits, ...: not a usage window
        if value is None:
            null_buckets.append(key)
            continue
        if not isinstance(value, dict) or "utilization" not in value:
            continue  # e.g. seven_day_breakdown: an object, but not a bucket
        if value["utilization"] is None:
            null_buckets.append(key)
            continue
        buckets[key] = BucketReading(
            utilization=_utilization(key, value["utilization"]),
            resets_at=_resets_at(key, value.get("resets_at")),
        )
    if not buckets and not null_buckets:
        raise BadResponse("usage answer has no usage bucket (no key with a utilization)")
    return Reading(taken_at=taken_at, buckets=buckets, null_buckets=tuple(sorted(null_buckets)))


def excerpt(response: httpx.Response, *secrets: str) -> str:
    """At most EXCERPT_CHARS of a non-2xx body, one line, with any secret blanked."""
    try:
        text = response.text
    except Exception:  # undecodable body: say so rather than fail while failing
        return "<undecodable body>"
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    text = " ".join(text.split())
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
    return user_agent.startswith("claude-code/")


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
    ) -> None:
        self.url = base_url.rstrip("/") + USAGE_PATH
        self.user_agent = user_agent
        self._owns_client = client is None
        self._client = client if client is not None else httpx.Client(timeout=timeout, transport=transport)
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
            response = self._client.get(self.url, headers=headers, timeout=self._timeout)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"usage endpoint {self.url} timed out ({type(exc).__name__})") from None
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise UpstreamTimeout(f"usage endpoint {self.url} unreachable: {exc}") from None
        except httpx.HTTPError as exc:
            raise UpstreamError(f"usage endpoint {self.url} failed: {type(exc).__name__}: {exc}") from None
        return self._interpret(response, access_token, now)

    def _interpret(self, response: httpx.Response, access_token: str, now: datetime) -> Reading:
        status = response.status_code
        if 200 <= status < 300:
            try:
                payload = json.loads(response.content)
            except (ValueError, UnicodeDecodeError):
                kind = response.headers.get("content-type", "no content-type")
                raise BadResponse(
                    f"usage endpoint answered {status} with a body that is not JSON "
                    f"({kind}, {len(response.content)} bytes)",
                    status=status,
                ) from None
            return parse_usage(payload, now)
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
                    f"claude-code/<version> (ANTHROPIC_USER_AGENT is {self.user_agent!r})"
                )
            raise RateLimited(f"usage endpoint rate-limited the call (429){hint}: {body}", retry_after=retry_after)
        if status >= 500:
            raise ServerError(f"usage endpoint failed ({status}): {body}", status=status)
        raise UpstreamError(f"usage endpoint answered {status}: {body}", status=status)
