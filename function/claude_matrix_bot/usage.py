"""The Anthropic usage endpoint: one HTTP call and a tolerant parser (DESIGN §2).

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
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any

import httpx

from .errors import (
    BadResponse,
    Forbidden,
    NoUsageLimit,
    RateLimited,
    ServerError,
    Unauthorized,
    UpstreamError,
    UpstreamTimeout,
)
from .logs import Redactor
from .model import FIVE_HOUR, WEEKLY_PREFIX, BucketReading, ExtraUsage, Reading

USAGE_PATH = "/api/oauth/usage"
OAUTH_BETA = "oauth-2025-04-20"
DEFAULT_TIMEOUT = httpx.Timeout(10.0)
EXCERPT_CHARS = 200

log = logging.getLogger("claude_matrix_bot.usage")

# Slightly outside 0-100 is rounding on the server side and is clamped; beyond
# these bounds the number cannot be a percentage and the answer is refused.
_UTILIZATION_FLOOR = -1.0
_UTILIZATION_CEILING = 1000.0

# Legacy buckets are named after their window (`five_hour`, `seven_day`, `seven_day_opus`,
# `seven_day_cowork`, ...). Other keys are not buckets even when they carry a
# `utilization`: `extra_usage` has one (percent of a monthly credit limit, or
# null), and treating it as a window would invent resets and thresholds.
_BUCKET_NAME = re.compile(r"^[a-z0-9]+_(?:hour|hours|day|days|week|weeks|month|months)(?:_[a-z0-9_]+)?$")

# Top-level keys this release reads, or knows and ignores (DESIGN §2). Anything else
# that carries a number is reported in `Reading.unknown_numbers`. `seven_day_breakdown`
# is an object of rows, not a bucket, although its name starts with `seven_day`.
_READ_KEYS = frozenset({"limits", "extra_usage", "spend"})
_IGNORED_KEYS = frozenset({"seven_day_breakdown", "member_dashboard_available"})

# limits[] kinds and the legacy bucket each maps to (DESIGN §2, decided).
_SESSION_KIND = "session"
_WEEKLY_ALL_KIND = "weekly_all"
_WEEKLY_SCOPED_KIND = "weekly_scoped"
_LIMIT_KIND_BUCKET = {_SESSION_KIND: FIVE_HOUR, _WEEKLY_ALL_KIND: WEEKLY_PREFIX}
_SLUG_SEPARATORS = re.compile(r"[\W_]+")

# Money: minor units up to 10^15 and up to 8 decimals cover every real currency;
# anything beyond is garbage, not an amount.
_MAX_MINOR = 10**15
_MAX_EXPONENT = 8
_DEFAULT_EXPONENT = 2
_DEFAULT_CURRENCY = "USD"
_MAX_UNKNOWN = 20


def _name(key: str) -> str:
    """A bucket name fit for an error message (keys come from the response)."""
    return repr(key if len(key) <= 60 else key[:57] + "...")


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


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


def _utilization(bucket: str, value: object, field: str = "utilization") -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadResponse(f"bucket {_name(bucket)}: {field} is a {type(value).__name__}, not a number")
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        raise BadResponse(f"bucket {_name(bucket)}: {field} is not a percentage") from None
    if math.isnan(number) or not _UTILIZATION_FLOOR <= number <= _UTILIZATION_CEILING:
        raise BadResponse(f"bucket {_name(bucket)}: {field} {number!r} is not a percentage")
    return min(max(number, 0.0), 100.0)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _carries_number(value: object) -> bool:
    """Whether a JSON value holds a number anywhere (iteratively: answers may nest deep)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if _is_number(item):
            return True
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


# --- limits[] -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _LimitEntry:
    percent: float | None
    resets_at: datetime | None
    is_active: bool | None
    severity: str | None


def scope_slug(display_name: str) -> str:
    """`Fable` -> `fable`, `Claude Code` -> `claude_code`: lower-cased, runs of
    non-alphanumerics as one `_`, none at the ends (DESIGN §2)."""
    return _SLUG_SEPARATORS.sub("_", display_name.lower()).strip("_")


def _display_name(scope: object, part: str) -> str | None:
    if not isinstance(scope, dict):
        return None
    inner = scope.get(part)
    if not isinstance(inner, dict):
        return None
    name = inner.get("display_name")
    return name if isinstance(name, str) and name.strip() else None


def _limit_bucket(kind: object, scope: object) -> str | None:
    """The bucket a limits[] entry feeds, or None for kinds this release does not read."""
    if not isinstance(kind, str):
        return None
    if kind in _LIMIT_KIND_BUCKET:
        return _LIMIT_KIND_BUCKET[kind]
    if kind == _WEEKLY_SCOPED_KIND:
        name = _display_name(scope, "model") or _display_name(scope, "surface")
        slug = scope_slug(name) if name else ""
        return f"{WEEKLY_PREFIX}_{slug}" if slug else None
    return None


def _rank(entry: _LimitEntry) -> float:
    return -1.0 if entry.percent is None else entry.percent


def _limit_entries(raw: object, unknown: list[str]) -> dict[str, _LimitEntry]:
    if raw is None:
        return {}
    if not isinstance(raw, list):
        if _carries_number(raw):
            unknown.append("limits")
        return {}
    entries: dict[str, _LimitEntry] = {}
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            if _carries_number(item):
                unknown.append(f"limits[{index}]")
            continue
        kind = item.get("kind")
        bucket = _limit_bucket(kind, item.get("scope"))
        if bucket is None:
            # Other kinds are ignored (DESIGN §2), but one with a number is a limit
            # this release cannot read: say so, so a changed endpoint is noticed.
            if _is_number(item.get("percent")):
                label = f"kind={_short(kind)}" if isinstance(kind, str) else "no kind"
                if kind == _WEEKLY_SCOPED_KIND:
                    label += ", no scope name"
                unknown.append(f"limits[{index}] ({label})")
            continue
        percent = item.get("percent")
        active = item.get("is_active")
        severity = item.get("severity")
        entry = _LimitEntry(
            percent=None if percent is None else _utilization(bucket, percent, "percent"),
            resets_at=_resets_at(bucket, item.get("resets_at")),
            is_active=active if isinstance(active, bool) else None,
            severity=_short(severity.strip().lower(), 20) if isinstance(severity, str) and severity.strip() else None,
        )
        previous = entries.get(bucket)
        # Two entries for one bucket (two display names that slug alike): the fuller wins,
        # so a limit that binds is never hidden behind a lower one.
        if previous is None or _rank(entry) > _rank(previous):
            entries[bucket] = entry
    return entries


# --- paid overage ------------------------------------------------------------------------


class _Unreadable(ValueError):
    """A money field that is present but not an amount."""


def _minor(value: object, where: str) -> int | None:
    if value is None:
        return None
    if not _is_number(value):
        raise _Unreadable(f"{where} is a {type(value).__name__}")
    assert isinstance(value, int | float)
    if isinstance(value, float) and not math.isfinite(value):
        raise _Unreadable(f"{where} is not finite")
    if not 0 <= value <= _MAX_MINOR:
        raise _Unreadable(f"{where} is out of range")
    return round(value)


def _exponent(value: object, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_EXPONENT:
        raise _Unreadable(f"{where} is not a number of decimals")
    return value


def _currency(value: object) -> str | None:
    # ISO 4217 codes; anything else is not trusted into a message.
    if isinstance(value, str) and re.fullmatch(r"[A-Za-z]{3}", value.strip()):
        return value.strip().upper()
    return None


def _percent(value: object) -> float | None:
    if not _is_number(value):
        return None
    assert isinstance(value, int | float)
    try:
        number = float(value)
    except OverflowError:
        return None
    return max(number, 0.0) if math.isfinite(number) and number <= 100 * _UTILIZATION_CEILING else None


def _cap_percent(used: int | None, limit: int | None, given: object) -> float | None:
    """Percent of the monthly cap: used/limit when both are known, else what the answer said."""
    if used is not None and limit:
        return used * 100.0 / limit
    return _percent(given)


def _reason(value: object) -> str | None:
    return _short(value.strip(), 60) if isinstance(value, str) and value.strip() else None


def _money(raw: object, where: str) -> tuple[int | None, str | None, int | None]:
    """`{"amount_minor", "currency", "exponent"}` -> (minor, currency, exponent)."""
    if raw is None:
        return None, None, None
    if not isinstance(raw, dict):
        raise _Unreadable(f"{where} is not an object")
    return (
        _minor(raw.get("amount_minor"), f"{where}.amount_minor"),
        _currency(raw.get("currency")),
        _exponent(raw.get("exponent"), f"{where}.exponent"),
    )


def _from_spend(spend: dict[str, Any], legacy: dict[str, Any] | None) -> ExtraUsage:
    used, used_currency, used_exponent = _money(spend.get("used"), "spend.used")
    limit, limit_currency, limit_exponent = _money(spend.get("limit"), "spend.limit")
    currency = used_currency or limit_currency or _currency((legacy or {}).get("currency")) or _DEFAULT_CURRENCY
    exponent = used_exponent if used_exponent is not None else limit_exponent
    exponent = _DEFAULT_EXPONENT if exponent is None else exponent
    if limit is not None and ((limit_currency not in (None, currency)) or (limit_exponent not in (None, exponent))):
        limit = None  # a cap in other units cannot be compared with the amount used
    enabled = spend.get("enabled")
    if not isinstance(enabled, bool):
        legacy_enabled = (legacy or {}).get("is_enabled")
        enabled = legacy_enabled if isinstance(legacy_enabled, bool) else None
    return ExtraUsage(
        enabled=enabled,
        used=used,
        limit=limit,
        currency=currency,
        exponent=exponent,
        percent=_cap_percent(used, limit, spend.get("percent")),
        disabled_reason=_reason(spend.get("disabled_reason")) or _reason((legacy or {}).get("disabled_reason")),
        source="spend",
    )


def _from_extra_usage(raw: dict[str, Any]) -> ExtraUsage:
    used = _minor(raw.get("used_credits"), "extra_usage.used_credits")
    limit = _minor(raw.get("monthly_limit"), "extra_usage.monthly_limit")
    exponent = _exponent(raw.get("decimal_places"), "extra_usage.decimal_places")
    enabled = raw.get("is_enabled")
    return ExtraUsage(
        enabled=enabled if isinstance(enabled, bool) else None,
        used=used,
        limit=limit,
        currency=_currency(raw.get("currency")) or _DEFAULT_CURRENCY,
        exponent=_DEFAULT_EXPONENT if exponent is None else exponent,
        percent=_cap_percent(used, limit, raw.get("utilization")),
        disabled_reason=_reason(raw.get("disabled_reason")),
        source="extra_usage",
    )


def _extra_usage(payload: dict[str, Any], unknown: list[str]) -> ExtraUsage | None:
    """`spend` when present and readable (also when its `enabled` disagrees), else
    `extra_usage`. Garbled money never rejects the answer: the buckets still count,
    and the unreadable part is reported like an unknown key."""
    spend = payload.get("spend")
    legacy = payload.get("extra_usage")
    legacy_obj = legacy if isinstance(legacy, dict) else None
    if isinstance(spend, dict):
        try:
            return _from_spend(spend, legacy_obj)
        except _Unreadable as exc:
            unknown.append(f"spend (unreadable: {exc})")
    elif spend is not None and _carries_number(spend):
        unknown.append("spend")
    if legacy_obj is not None:
        try:
            return _from_extra_usage(legacy_obj)
        except _Unreadable as exc:
            unknown.append(f"extra_usage (unreadable: {exc})")
    elif legacy is not None and _carries_number(legacy):
        unknown.append("extra_usage")
    return None


# --- the answer ---------------------------------------------------------------------------


def parse_usage(payload: object, taken_at: datetime) -> Reading:
    """Turn the decoded JSON of the usage endpoint into a `Reading`.

    Buckets come from two places (DESIGN §1, §2): the legacy keys named like a
    window (`five_hour`, `seven_day*`) whose value is an object with a
    `utilization`, and the `limits[]` array (`session` -> `five_hour`,
    `weekly_all` -> `seven_day`, `weekly_scoped` -> `seven_day_<slug>`). Where
    both give a bucket the legacy float wins and `limits[]` fills, field by field,
    what the legacy key leaves null or absent. Null buckets go to `null_buckets`.

    Raises `BadResponse` for a non-object and for a bucket whose numbers are not
    sane, and `NoUsageLimit` when no bucket with a number can be read: never a
    quiet "not in use" forever (DESIGN §1, on every cycle).
    """
    if not isinstance(payload, dict):
        raise BadResponse(f"usage answer is a JSON {type(payload).__name__}, not an object")
    legacy: dict[str, BucketReading] = {}
    legacy_null: set[str] = set()
    unknown: list[str] = []
    for key, value in payload.items():
        if not isinstance(key, str) or key in _READ_KEYS or key in _IGNORED_KEYS:
            continue
        if _BUCKET_NAME.match(key):
            if value is None:
                legacy_null.add(key)
                continue
            if isinstance(value, dict) and "utilization" in value:
                if value["utilization"] is None:
                    legacy_null.add(key)
                else:
                    # Per-bucket extras (limit_dollars, used, limit) are known and ignored.
                    legacy[key] = BucketReading(
                        utilization=_utilization(key, value["utilization"]),
                        resets_at=_resets_at(key, value.get("resets_at")),
                    )
                continue
        if _carries_number(value):
            unknown.append(_short(key))
    entries = _limit_entries(payload.get("limits"), unknown)

    buckets: dict[str, BucketReading] = {}
    null_buckets: list[str] = []
    for name in sorted(set(legacy) | legacy_null | set(entries)):
        old = legacy.get(name)
        entry = entries.get(name)
        if old is not None:
            buckets[name] = BucketReading(
                utilization=old.utilization,
                resets_at=old.resets_at if old.resets_at is not None else (entry.resets_at if entry else None),
                is_active=entry.is_active if entry else None,
                severity=entry.severity if entry else None,
            )
        elif entry is not None and entry.percent is not None:
            buckets[name] = BucketReading(entry.percent, entry.resets_at, entry.is_active, entry.severity)
        else:
            null_buckets.append(name)  # `percent: null` is a null bucket too
    if not buckets:
        seen = f"{len(null_buckets)} null bucket(s)" if null_buckets else "no bucket"
        raise NoUsageLimit(f"no usage limit in the answer: a free plan, or the endpoint changed ({seen})")
    extra = _extra_usage(payload, unknown)
    return Reading(
        taken_at=taken_at,
        buckets=buckets,
        null_buckets=tuple(null_buckets),
        extra_usage=extra,
        unknown_numbers=tuple(unknown[:_MAX_UNKNOWN]),
    )


def excerpt(response: httpx.Response, *secrets: str) -> str:
    """At most EXCERPT_CHARS of a non-2xx body, one line, with any secret blanked."""
    try:
        text = response.text
    except Exception:  # undecodable body: say so rather than fail while failing
        return "<undecodable body>"
    text = " ".join(Redactor.of(*secrets, mask="<redacted>", min_chars=1)(text).split())
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
            reading = parse_usage(payload, now)
            if reading.unknown_numbers:
                # A changed endpoint is noticed the day it changes (DESIGN §1); status lists them too.
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
                    f"claude-code/<version> (ANTHROPIC_USER_AGENT is {self.user_agent!r})"
                )
            raise RateLimited(f"usage endpoint rate-limited the call (429){hint}: {body}", retry_after=retry_after)
        if status >= 500:
            raise ServerError(f"usage endpoint failed ({status}): {body}", status=status)
        raise UpstreamError(f"usage endpoint answered {status}: {body}", status=status)
