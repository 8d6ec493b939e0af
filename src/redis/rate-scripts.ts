/**
 * The Lua side of RedisRateLimiter: GCRA (the token bucket as "theoretical arrival times") for every
 * limit of a call in one script, so a call is admitted by all limits or charged by none.
 *
 * Key layout: one HASH `<prefix>{<name>}:rate`
 *   `tat:<unit>:<limit>/<interval ms>:<burst>`  per limit, the time (server µs) at which the bucket is
 *       full again. Invariant: budget left at t = burst - max(0, tat - t) / T, where T = interval / limit
 *       (µs per unit). Naming the field after the configuration means processes configured differently
 *       never read each other's state as their own.
 *   `tat:spacing:<ms>`  minInterval, as a bucket of burst 1 that every start pays 1 into.
 *   `pause`  server µs before which nothing is admitted (a 429 seen by any process).
 * The key expires when every bucket is full again and no pause is in force — at that point deleting it
 * changes nothing, so nothing is ever left behind.
 *
 * Limits set at run time (`limits = ...`, what limitedFetch does when it learns them from headers) live
 * beside it, in a HASH `<prefix>{<name>}:rate-limits`: `generation` (a counter) and `fields` (a JSON array of
 * the limits' field names, which carry their configuration). Every acquire carries the generation its
 * process last saw and its limits' fields; the script admits only against the generation Redis holds, so
 * processes never charge (or read) limits that differ: a process behind is answered with the current
 * limits instead (and asks again), a process that set new limits installs them (the last set wins), and a
 * process whose generation Redis lost (restart, FLUSHALL) installs its own again. The HASH expires a day
 * after the last set; a process that set limits installs them again at its next acquire after that.
 *
 * Each limit travels as five arguments: field, T (µs per unit), tau (burst × T, µs), an amount (the cost
 * to charge, a settlement delta, or a `remaining` to tighten to), and, for a settlement, the end of the
 * call's charge in that bucket (0 when unused).
 *
 * Refunds give back only what is still ahead: a call's charge occupies the bucket's timeline from where
 * the bucket stood when it was admitted until its `end`; once the bucket has refilled past part of it,
 * that part is spent, and later calls were admitted after it. Subtracting the whole unused cost from the
 * bucket's current time would move those later calls earlier than they were admitted for, and a window
 * would then see more than the limit allows. So a refund is at most `end - now`.
 */

/** How many moves of a charge (limits changed at run time) RATE_ACQUIRE remembers for RATE_SETTLE. */
const MOVES_KEPT = 32;

const PRELUDE = `
local key = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = tonumber(ARGV[2])
local function arg(i, k) return ARGV[2 + (i - 1) * 5 + k] end
local function field(i) return arg(i, 1) end
local function num(i, k) return tonumber(arg(i, k)) end

local fields = {'pause'}
for i = 1, n do fields[#fields + 1] = field(i) end
local values = redis.call('HMGET', key, unpack(fields))
local pause = tonumber(values[1]) or 0
local tats = {}
for i = 1, n do tats[i] = tonumber(values[i + 1]) or 0 end

local function save()
  local writes = {'pause', pause}
  local horizon = pause
  for i = 1, n do
    writes[#writes + 1] = field(i)
    writes[#writes + 1] = tats[i]
    if tats[i] > horizon then horizon = tats[i] end
  end
  if horizon <= now then
    -- Every bucket is full and no pause holds: the state is the same as no state.
    redis.call('DEL', key)
    return
  end
  redis.call('HSET', key, unpack(writes))
  redis.call('PEXPIRE', key, math.ceil((horizon - now) / 1000) + 1000)
end
`;

/**
 * KEYS 1 the buckets, 2 the limits set at run time. ARGV 1 unused, 2 n, then per limit: field, T, tau, cost,
 * unused; then the generation this process last saw, 1 to install its limits (it set them) or 0, k (its
 * first k limits are its limits; the rest is minInterval's spacing) and its previous limits' fields (count,
 * then fields), whose budget carries over when Redis holds no generation to carry it from.
 *
 * Returns `{1, now, generation, end...}` when admitted and charged (per limit, the end of this call's charge
 * in the bucket, 0 where it cost nothing), `{0, wait µs, generation}` when not (nothing charged): the exact
 * time until every limit can pay; `{2, generation, field...}` when Redis holds newer limits than the
 * process (nothing charged): it takes them and asks again.
 */
export const RATE_ACQUIRE = `${PRELUDE}
local base = 2 + n * 5
local seen = tonumber(ARGV[base + 1])
local install = ARGV[base + 2] == '1'
local k = tonumber(ARGV[base + 3])
local stored = redis.call('HMGET', KEYS[2], 'generation', 'fields')
local generation = tonumber(stored[1]) or 0
local installed = install or seen > generation
if installed then
  -- This process's limits become everyone's: it set them (the last set wins), or Redis lost the ones it
  -- knows. A limit keeps what was spent when its numbers change (matched by unit, in order, as
  -- RateLimiter does): spent units stay spent under the new numbers, so nobody gets a fresh bucket.
  local old = {}
  if generation > 0 then old = cjson.decode(stored[2])
  else for j = 1, tonumber(ARGV[base + 4]) do old[j] = ARGV[base + 4 + j] end end
  local used, mine, kept, moved = {}, {}, {}, {}
  for i = 1, k do
    mine[i] = field(i)
    kept[field(i)] = true
  end
  for i = 1, k do
    local unit = string.match(field(i), '^tat:(.+):[^:]+/[^:]+:[^:]+$')
    for j, previous in ipairs(old) do
      local u, limit, interval = string.match(previous, '^tat:(.+):([^:]+)/([^:]+):[^:]+$')
      if not used[j] and u == unit then
        used[j] = true
        if previous ~= field(i) then
          local tat = tonumber(redis.call('HGET', KEYS[1], previous)) or 0
          local spent = math.max(0, tat - now) / (tonumber(interval) * 1000 / tonumber(limit))
          if spent > 0 then
            tats[i] = math.max(tats[i], now + spent * num(i, 2))
            moved[#moved + 1] = {previous, field(i), string.format('%.0f', now)}
          end
        end
        break
      end
    end
  end
  for _, previous in ipairs(old) do
    if not kept[previous] then redis.call('HDEL', KEYS[1], previous) end
  end
  if install then generation = math.max(generation, seen) + 1 else generation = seen end
  redis.call('HSET', KEYS[2], 'generation', generation, 'fields', k > 0 and cjson.encode(mine) or '[]')
  if #moved > 0 then
    -- Where the charges went, so calls in flight still get their refunds (RATE_SETTLE): the last
    -- MOVES_KEPT moves, and the time of the newest one dropped (a call admitted before it cannot follow).
    local kept_moves = redis.call('HMGET', KEYS[2], 'moves', 'dropped')
    local moves = kept_moves[1] and cjson.decode(kept_moves[1]) or {}
    local dropped = kept_moves[2] or '0'
    for _, move in ipairs(moved) do moves[#moves + 1] = move end
    while #moves > ${MOVES_KEPT} do
      dropped = moves[1][3]
      table.remove(moves, 1)
    end
    redis.call('HSET', KEYS[2], 'moves', cjson.encode(moves), 'dropped', dropped)
  end
  redis.call('PEXPIRE', KEYS[2], 86400000)
elseif generation > seen then
  local reply = {2, generation}
  for _, f in ipairs(cjson.decode(stored[2])) do reply[#reply + 1] = f end
  return reply
end
local ready = pause
for i = 1, n do
  local cost = num(i, 4)
  if cost > 0 then
    -- Payable at t when max(tat, t) + cost * T - tau <= t.
    local at = math.max(tats[i], now) + cost * num(i, 2) - num(i, 3)
    if at > ready then ready = at end
  end
end
if ready > now then
  if installed then save() end
  return {0, math.ceil(ready - now), generation}
end
local reply = {1, now, generation}
for i = 1, n do
  local cost = num(i, 4)
  reply[i + 3] = 0
  if cost > 0 then
    tats[i] = math.max(tats[i], now) + cost * num(i, 2)
    reply[i + 3] = tats[i]
  end
end
save()
return reply
`;

/**
 * Per limit: field, T, tau, delta, end (the end of the call's charge in the bucket). Positive delta:
 * charge the extra at the bucket's end, a bucket may go into debt; negative: refund what of the call's
 * charge is still ahead, at most `end - now` (see above). Returns `{1, end..., now}`: per limit, the end of
 * the call's charge after this settlement, then the server time.
 *
 * With KEYS 2 (the limits set at run time), ARGV after the limits: per limit, the field the call was
 * charged in when it is not that limit's ('' otherwise), then since when (server µs) the charge has sat
 * there. Its end is then followed through the moves RATE_ACQUIRE recorded when the limits changed: a move
 * carries the spent units ahead of its time into the new field at the new T, so the charge's end maps
 * the same way, and the refund gives back only what is still ahead of it. A charge whose moves are not
 * all known (dropped, Redis lost them) refunds nothing: the safe side.
 */
export const RATE_SETTLE = `${PRELUDE}
local base = 2 + n * 5
local moves, dropped
local function per_unit(name)
  local limit, interval = string.match(name, '^tat:.+:([^:]+)/([^:]+):[^:]+$')
  return tonumber(interval) * 1000 / tonumber(limit)
end
-- The end of a charge made in field 'from' (since 'since'), as it sits now in field i; 0 if unknown.
local function follow(i, from, since, ends)
  if moves == nil then
    local stored = redis.call('HMGET', KEYS[2], 'moves', 'dropped')
    moves = stored[1] and cjson.decode(stored[1]) or {}
    dropped = tonumber(stored[2]) or 0
  end
  if since <= dropped then return 0 end
  for _ = 1, #moves do
    if from == field(i) then return ends end
    local found
    -- Moves are in time order: the first one out of 'from' after 'since' is the one that moved it.
    for _, move in ipairs(moves) do
      if move[1] == from and tonumber(move[3]) >= since then
        found = move
        break
      end
    end
    if found == nil then return 0 end
    local at = tonumber(found[3])
    ends = at + math.max(0, ends - at) * per_unit(found[2]) / per_unit(from)
    from, since = found[2], at
  end
  if from == field(i) then return ends end
  return 0
end
local reply = {1}
for i = 1, n do
  local delta, ends = num(i, 4), num(i, 5)
  local from = ARGV[base + i]
  if from ~= nil and from ~= '' then ends = follow(i, from, tonumber(ARGV[base + n + 1]), ends) end
  if delta > 0 then
    tats[i] = math.max(tats[i], now) + delta * num(i, 2)
    ends = tats[i]
  elseif delta < 0 then
    local give = math.min(-delta * num(i, 2), math.max(0, ends - now))
    tats[i] = tats[i] - give
    ends = ends - give
  end
  reply[i + 1] = ends
end
reply[n + 2] = now
save()
return reply
`;

/**
 * ARGV 1 pause ms. Nothing starts until now + ms, and every bucket is empty at that moment so the
 * callers that piled up resume at the steady rate instead of in one burst. Only ever extends.
 * Returns `{extended, until - now µs}`.
 */
export const RATE_PAUSE = `${PRELUDE}
local untilUs = now + tonumber(ARGV[1]) * 1000
if untilUs <= pause then return {0, math.ceil(pause - now)} end
pause = untilUs
for i = 1, n do tats[i] = math.max(tats[i], untilUs + num(i, 3)) end
save()
return {1, math.ceil(untilUs - now)}
`;

/** Per limit: field, T, tau, remaining (-1: not reported). Levels buckets down, never up. */
export const RATE_TIGHTEN = `${PRELUDE}
for i = 1, n do
  local remaining = num(i, 4)
  if remaining >= 0 then
    -- budget left at now = (tau - (tat - now)) / T; make it at most 'remaining'.
    tats[i] = math.max(tats[i], now + num(i, 3) - remaining * num(i, 2))
  end
end
save()
return {1}
`;

/** Read-only: `{now, flat HGETALL}`. */
export const RATE_INSPECT = `
local t = redis.call('TIME')
return {tonumber(t[1]) * 1000000 + tonumber(t[2]), redis.call('HGETALL', KEYS[1])}
`;

/**
 * The one script of RedisKeyedRateLimiter, for any keys and levels, and for several calls at once: GCRA
 * over buckets kept one per Redis key (a key's or a level instance's limit), each call admitted by all
 * its buckets and charged in all, or charged in none.
 *
 * KEYS: every bucket the calls touch (all with the limiter's hash tag, so one slot), each once. ARGV 1:
 * the number of calls; then per key of KEYS, T (µs per unit) and tau (burst × T, µs) — a key names its
 * limit, so they are the same for every call on it; then per call, in the order they were asked: m (its
 * buckets with a cost), then per bucket the index of its key in KEYS and the cost. Calls are decided one
 * after the other, each seeing the charges of those before it, exactly as if each had run a script of its
 * own. Returns `{now, w...}`: Redis' time (µs) and, per call, 0 when admitted and charged, else the exact
 * µs until every bucket of it can pay (nothing charged).
 *
 * Commands: TIME, one MGET for every bucket, one `SET ... PX` per bucket charged — each key carries its
 * own expiry, so nothing has to compare one with another, and several calls on one bucket (the global
 * level) write it once. A bucket's key expires once it is full again: deleting it then changes nothing,
 * so a million keys gone idle leave nothing behind in Redis, and the client keeps nothing per key either.
 */
export const KEYED_RATE_ACQUIRE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local max, ceil = math.max, math.ceil
local n = #KEYS
-- No key at all when every call costs nothing (MGET needs one).
local values = n > 0 and redis.call('MGET', unpack(KEYS)) or {}
local tats, emission, tolerance, charged = {}, {}, {}, {}
for k = 1, n do
  tats[k] = tonumber(values[k]) or 0
  emission[k] = tonumber(ARGV[2 * k])
  tolerance[k] = tonumber(ARGV[2 * k + 1])
end
local reply = {now}
local at = 2 + 2 * n
for call = 1, tonumber(ARGV[1]) do
  local last = at + 2 * tonumber(ARGV[at])
  local ready = now
  for i = at + 1, last, 2 do
    local k = tonumber(ARGV[i])
    -- Payable at t when max(tat, t) + cost * T - tau <= t.
    local due = max(tats[k], now) + tonumber(ARGV[i + 1]) * emission[k] - tolerance[k]
    if due > ready then ready = due end
  end
  if ready > now then
    reply[call + 1] = ceil(ready - now)
  else
    reply[call + 1] = 0
    for i = at + 1, last, 2 do
      local k = tonumber(ARGV[i])
      tats[k] = max(tats[k], now) + tonumber(ARGV[i + 1]) * emission[k]
      charged[k] = true
    end
  end
  at = last + 1
end
for k in pairs(charged) do
  redis.call('SET', KEYS[k], tats[k], 'PX', ceil((tats[k] - now) / 1000) + 1000)
end
return reply
`;
