"""The Redis session store: hashed keys, TTLs, per-user index, fenced lock, single-use logins.

Key layout (the ``{...}`` part is a Redis Cluster hash tag, so every multi-key
script touches one slot):

    bff:{<key>}:s         HASH  one session; expires with the session (idle/absolute)
    bff:{<key>}:lock      STR   refresh lock, value = owner token, PX expiry
    bff:{u:<h(sub)>}:idx  ZSET  the user's session keys, score = absolute expiry
    bff:{p:<h(sid)>}:idx  SET   session keys per provider ``sid`` (back-channel logout)
    bff:{tx:<h(state)>}   STR   a pending login, read once with GETDEL
    bff:jti:<h(jti)>      STR   a seen logout-token ``jti`` (replay guard)
    bff:rl:<bucket>       STR   a rate-limit counter

Session fields are written individually (``HSET``), never as one blob, so a
``last seen`` update can never overwrite freshly refreshed tokens.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, cast

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from bff.errors import StoreUnavailable
from bff.session.model import FORMAT_VERSION, LoginTransaction, Session
from bff.session.store import NewSession

if TYPE_CHECKING:
    from bff.session.fast_read import MultiplexedReader

AnyRedis = Redis | RedisCluster
log = logging.getLogger("bff.store")

_CREATE = """
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""

_TOUCH = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 's', ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# Only the holder of the refresh lock may write tokens, and only to a live session.
_FENCED_WRITE = """
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HSET', KEYS[2], unpack(ARGV, 2))
  return 1
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

_RATE = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]) ttl = tonumber(ARGV[1]) end
return {n, ttl}
"""

_TOKEN_FIELDS = ("at", "rt", "it")


def _h(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def _str(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def session_redis_key(key: str) -> str:
    return f"bff:{{{key}}}:s"


def lock_redis_key(key: str) -> str:
    return f"bff:{{{key}}}:lock"


def user_index_key(sub: str) -> str:
    return f"bff:{{u:{_h(sub)}}}:idx"


def provider_sid_key(provider_sid: str) -> str:
    return f"bff:{{p:{_h(provider_sid)}}}:idx"


def login_key(state: str) -> str:
    return f"bff:{{tx:{_h(state)}}}"


@asynccontextmanager
async def guarded(action: str) -> AsyncIterator[None]:
    """Turn every Redis or socket failure into StoreUnavailable (the 503 path).

    Anything else raised inside the Redis client (its own bugs under failover
    races, e.g. an AttributeError on a connection another task just closed) is
    logged with its traceback and also answered as a retryable 503, not a 500.
    """
    try:
        yield
    except (RedisError, OSError) as exc:
        raise StoreUnavailable(f"session store unavailable during {action}: {type(exc).__name__}") from exc
    except Exception as exc:
        log.error("session store client failed during %s", action, exc_info=True)
        raise StoreUnavailable(f"session store client failed during {action}: {type(exc).__name__}") from exc


def _text(raw: Mapping[bytes, bytes], name: str, default: str = "") -> str:
    value = raw.get(name.encode())
    return value.decode() if value is not None else default


def decode_session(key: str, raw: Mapping[bytes, bytes]) -> Session | None:
    """A Session from HGETALL output; None for an absent or unreadable record."""
    if not raw or _text(raw, "v") != str(FORMAT_VERSION):
        return None
    try:
        meta = json.loads(_text(raw, "m", "{}"))
        return Session(
            key=key,
            sub=_text(raw, "sub"),
            claims=dict(meta.get("claims", {})),
            created_at=float(meta["created"]),
            expires_at=float(meta["abs"]),
            last_seen=float(_text(raw, "s", "0")),
            ip=str(meta.get("ip", "")),
            user_agent=str(meta.get("ua", "")),
            provider_sid=meta.get("psid"),
            access_expires_at=float(_text(raw, "ax", "0")),
            token_version=int(_text(raw, "tv", "0")),
            has_refresh_token=b"rt" in raw,
            encrypted={f: raw[f.encode()] for f in _TOKEN_FIELDS if f.encode() in raw},
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


class RedisSessionStore:
    """SessionStore on Redis (standalone, Sentinel or Cluster).

    ``fast_reader`` (see bff.session.fast_read), when given, serves the hot
    session read (``get``); every other command goes through ``redis``. Its
    owner closes it.
    """

    def __init__(
        self, redis: AnyRedis, *, idle_timeout: int, absolute_timeout: int,
        fast_reader: MultiplexedReader | None = None,
    ) -> None:
        self.redis = redis
        self.fast_reader = fast_reader
        self.idle_timeout = idle_timeout
        self.absolute_timeout = absolute_timeout
        self._create = redis.register_script(_CREATE)
        self._touch = redis.register_script(_TOUCH)
        self._fenced = redis.register_script(_FENCED_WRITE)
        self._release = redis.register_script(_RELEASE)
        self._renew = redis.register_script(_RENEW)
        self._rate = redis.register_script(_RATE)

    def ttl_ms(self, expires_at: float, now: float) -> int:
        """Key lifetime: the idle timeout, never past the absolute expiry, plus a grace.

        The service enforces both timeouts exactly on every read; the grace keeps
        an expired record long enough for that check to see it and audit the
        expiry, after which Redis removes it without any cron.
        """
        grace = min(300, self.idle_timeout)
        return max(1, math.ceil((min(self.idle_timeout, expires_at - now) + grace) * 1000))

    async def create(
        self, key: str, new: NewSession, encrypted: Mapping[str, bytes], *, now: float
    ) -> Session:
        expires_at = now + self.absolute_timeout
        meta = {
            "claims": dict(new.claims), "created": now, "abs": expires_at, "ip": new.ip,
            "ua": new.user_agent, "psid": new.provider_sid,
        }
        fields: dict[str, Any] = {
            "v": FORMAT_VERSION, "sub": new.sub, "m": json.dumps(meta, separators=(",", ":")),
            "s": f"{now:.3f}", "ax": f"{new.access_expires_at:.3f}", "tv": 1, **encrypted,
        }
        args: list[Any] = [self.ttl_ms(expires_at, now)]
        for name, value in fields.items():
            args += [name, value]
        async with guarded("session create"):
            # Index first: an index entry without a session is filtered out when
            # listed, while a session missing from the index would be invisible.
            pipe = self.redis.pipeline(transaction=False)
            pipe.zadd(user_index_key(new.sub), {key: expires_at})
            pipe.expire(user_index_key(new.sub), self.absolute_timeout + 60)
            if new.provider_sid:
                pipe.sadd(provider_sid_key(new.provider_sid), key)
                pipe.expire(provider_sid_key(new.provider_sid), self.absolute_timeout + 60)
            await pipe.execute()
            await self._create(keys=[session_redis_key(key)], args=args)
        return Session(
            key=key, sub=new.sub, claims=dict(new.claims), created_at=now, expires_at=expires_at,
            last_seen=now, ip=new.ip, user_agent=new.user_agent, provider_sid=new.provider_sid,
            access_expires_at=new.access_expires_at, token_version=1,
            has_refresh_token="rt" in encrypted, encrypted=dict(encrypted),
        )

    async def get(self, key: str) -> Session | None:
        async with guarded("session read"):
            if self.fast_reader is not None:
                raw = await self.fast_reader.hgetall(session_redis_key(key))
            else:
                raw = cast(dict[bytes, bytes], await self.redis.hgetall(session_redis_key(key)))
        return decode_session(key, raw)

    async def touch(self, session: Session, *, now: float) -> bool:
        async with guarded("session touch"):
            result = await self._touch(
                keys=[session_redis_key(session.key)],
                args=[f"{now:.3f}", self.ttl_ms(session.expires_at, now)],
            )
        return bool(result)

    async def delete(self, session: Session) -> bool:
        async with guarded("session delete"):
            removed = await self.redis.delete(session_redis_key(session.key))
            pipe = self.redis.pipeline(transaction=False)
            pipe.zrem(user_index_key(session.sub), session.key)
            if session.provider_sid:
                pipe.srem(provider_sid_key(session.provider_sid), session.key)
            await pipe.execute()
        return bool(removed)

    async def list_for_user(self, sub: str) -> list[Session]:
        """The user's live sessions; index entries of dead sessions are pruned on the way."""
        index = user_index_key(sub)
        async with guarded("session list"):
            keys = [_str(k) for k in await self.redis.zrange(index, 0, -1)]
            if not keys:
                return []
            pipe = self.redis.pipeline(transaction=False)
            for key in keys:
                pipe.hgetall(session_redis_key(key))
            raws = await pipe.execute()
            live: list[Session] = []
            dead: list[str] = []
            for key, raw in zip(keys, raws, strict=True):
                session = decode_session(key, raw)
                if session is None or session.sub != sub:
                    dead.append(key)
                else:
                    live.append(session)
            if dead:
                await self.redis.zrem(index, *dead)
        return live

    async def keys_for_provider_sid(self, provider_sid: str) -> list[str]:
        async with guarded("provider sid lookup"):
            members = await self.redis.smembers(provider_sid_key(provider_sid))
        return sorted(_str(m) for m in members)

    async def put_login(self, tx: LoginTransaction, ttl: int) -> None:
        body = json.dumps(
            {"state": tx.state, "nonce": tx.nonce, "verifier": tx.code_verifier,
             "return_to": tx.return_to, "browser": tx.browser, "created": tx.created_at}
        )
        async with guarded("login start"):
            await self.redis.set(login_key(tx.state), body, ex=ttl)

    async def pop_login(self, state: str) -> LoginTransaction | None:
        """The pending login for ``state``, removed in the same step (single use)."""
        async with guarded("login completion"):
            raw = await self.redis.getdel(login_key(state))
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            tx = LoginTransaction(
                state=str(data["state"]), nonce=str(data["nonce"]),
                code_verifier=str(data["verifier"]), return_to=str(data["return_to"]),
                browser=str(data["browser"]), created_at=float(data["created"]),
            )
        except (ValueError, KeyError, TypeError):
            return None
        # The key is a hash of the state; make sure the record is the one asked for.
        return tx if tx.state == state else None

    async def remember_jti(self, jti: str, ttl: int) -> bool:
        """True the first time a ``jti`` is seen within ``ttl`` seconds, False on replay."""
        async with guarded("jti check"):
            return bool(await self.redis.set(f"bff:jti:{_h(jti)}", b"1", ex=ttl, nx=True))

    async def hit_rate_limit(self, bucket: str, limit: int, window: int) -> int | None:
        """Count one hit; None while within ``limit``, else seconds until the window resets."""
        async with guarded("rate limit"):
            count, ttl = await self._rate(keys=[f"bff:rl:{bucket}"], args=[window])
        return None if int(count) <= limit else max(1, int(ttl))

    # --- refresh lock -------------------------------------------------------------

    async def acquire_lock(self, key: str, owner: str, ttl_ms: int) -> bool:
        async with guarded("refresh lock"):
            return bool(await self.redis.set(lock_redis_key(key), owner, px=ttl_ms, nx=True))

    async def renew_lock(self, key: str, owner: str, ttl_ms: int) -> bool:
        async with guarded("refresh lock renewal"):
            return bool(await self._renew(keys=[lock_redis_key(key)], args=[owner, ttl_ms]))

    async def release_lock(self, key: str, owner: str) -> None:
        async with guarded("refresh lock release"):
            await self._release(keys=[lock_redis_key(key)], args=[owner])

    async def lock_held(self, key: str) -> bool:
        async with guarded("refresh lock check"):
            return bool(await self.redis.exists(lock_redis_key(key)))

    async def write_tokens(
        self, key: str, owner: str, fields: Mapping[str, bytes | str | int]
    ) -> bool:
        """Store refreshed tokens if, and only if, ``owner`` still holds the lock."""
        args: list[Any] = [owner]
        for name, value in fields.items():
            args += [name, value]
        async with guarded("token write"):
            result = await self._fenced(
                keys=[lock_redis_key(key), session_redis_key(key)], args=args
            )
        return bool(result)

    async def ping(self) -> bool:
        async with guarded("ping"):
            return bool(await self.redis.ping())
