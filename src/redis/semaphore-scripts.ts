/**
 * The Lua side of RedisSemaphore. Every state change is one script, so each is atomic and costs one
 * round trip. The key layout (all under one hash tag, so Redis Cluster keeps them on one node):
 *
 * - `<prefix>{<name>}:meta` HASH
 *     `used`     weight held now. Invariant: `used` = the sum of the weights in the `h:*` fields.
 *     `fence`    the last fencing token handed out; +1 per grant.
 *     `seq`      the last ticket number; +1 per queued waiter.
 *     `waiting`  tickets in `queue`. Invariant: `waiting` = ZCARD queue.
 *     `ready`    server time (µs) before which nothing is granted (see "restart guard"), 0 when none.
 *     `capacity` the capacity the last caller configured (for `inspect`).
 *     `h:<token>` one field per holder: `<weight>:<ticket>:<client>` (`ticket` 0 for tryAcquire, whose
 *     grant only ever travels in its own reply).
 * - `<prefix>{<name>}:queue` ZSET of waiting tickets: member `<seq, 16 digits>:<weight>:<ticket>:<client>`,
 *     score `-priority`. Equal scores sort by member, so the zero-padded seq makes equal priorities FIFO.
 * - `<prefix>{<name>}:clients` ZSET: client id -> lease expiry (server µs). One lease per process covers
 *     all of its holders and tickets, so renewing costs one script per process, not one per permit.
 * - `<prefix>{<name>}:wake:<client>` is a pub/sub channel, not a key: grant notices `<ticket>:<token>`
 *     are PUBLISHed there for that client's subscribed connection. Nothing is stored, so nothing needs
 *     an expiry; a notice nobody hears (a connection that was down) is made good by the next heartbeat.
 *
 * `seq` is Redis' (it orders the queue); `ticket` is the process's own number for the request, sent with
 * the acquire. Grants name the ticket, not the seq, because a grant can overtake the acquire's reply: the
 * notice travels on the process's subscribed connection, the reply on its command connection, and nothing
 * orders two sockets. A process that learned its seq only from the reply could not tell a grant for a
 * request whose reply is still on its way from one for a request it abandoned. Holders keep their
 * ticket too, so a heartbeat can hand over a grant whose notice was lost (see HEARTBEAT).
 *
 * Every key expires (`keyTtl`) unless some process keeps using the semaphore; heartbeats refresh them.
 *
 * Fencing tokens and ticket numbers start from the server clock in µs when the state is created, so
 * they keep increasing even when the state is lost (restart without persistence, expiry after idling):
 * Redis runs far fewer than one script per µs, so the counters never outrun the clock.
 *
 * Restart guard: when `meta` is missing and the server has been up for less than one lease, holders
 * from before a restart may still be working, unaware that their state is gone. Nothing is granted
 * until a lease has passed since the server started; those holders fail to renew by then and stop.
 */

/**
 * The one read of a semaphore's state, as Lua: `used, fence, seq, waiting, ready, <extra>, capacity`.
 * load() and the short paths make the same read (the general path reuses a short path's), so the field
 * order lives here once.
 */
const readState = (extra: string) =>
  `redis.call('HMGET', KEYS[1], 'used', 'fence', 'seq', 'waiting', 'ready', ${extra}, 'capacity')`;

const PRELUDE = `
local meta, queue, clients = KEYS[1], KEYS[2], KEYS[3]
local prefix, me = ARGV[1], ARGV[2]
local capacity = tonumber(ARGV[3])
local leaseUs = tonumber(ARGV[4]) * 1000
local keyTtl = tonumber(ARGV[5])
local guardRestarts = ARGV[6] == '1'

-- Lua's '..' prints numbers with 14 digits; tokens and times need all of theirs.
local function int(x) return string.format('%.0f', x) end

local nowUs
local function now()
  if not nowUs then
    local t = redis.call('TIME')
    nowUs = tonumber(t[1]) * 1000000 + tonumber(t[2])
  end
  return nowUs
end

local used, fence, seq, waiting, ready
-- The capacity the last call wrote (nil before the first).
local stored
local added = {}
local created = false

-- Reads the state; false when it does not exist. \`read\` is that HMGET's reply if the script made it already.
local function load(extra, read)
  local m = read or ${readState("extra or 'used'")}
  if not m[1] then return false, nil end
  used, fence, seq, waiting, ready = tonumber(m[1]), tonumber(m[2]), tonumber(m[3]), tonumber(m[4]), tonumber(m[5])
  stored = tonumber(m[7])
  return true, m[6]
end

local function create()
  created = true
  used, fence, seq = 0, now(), now()
  waiting = redis.call('ZCARD', queue)
  ready = 0
  if guardRestarts then
    local uptime = tonumber(string.match(redis.call('INFO', 'server'), 'uptime_in_seconds:(%d+)')) or 0
    -- uptime is truncated to whole seconds, so this start time is never earlier than the real one.
    local guardUntil = now() - uptime * 1000000 + leaseUs + leaseUs / 50 + 10000
    if guardUntil > now() then ready = guardUntil end
  end
end

-- Whether the restart guard still holds grants back.
local function guarded()
  if ready == 0 then return false end
  if now() >= ready then ready = 0 return false end
  return true
end

local function save()
  redis.call('HSET', meta, 'used', used, 'fence', fence, 'seq', seq, 'waiting', waiting, 'ready', ready,
    'capacity', capacity, unpack(added))
  if created then
    redis.call('PEXPIRE', meta, keyTtl)
    redis.call('PEXPIRE', clients, keyTtl)
  end
end

local function grant(weight, ticket, client)
  fence = fence + 1
  used = used + weight
  added[#added + 1] = 'h:' .. int(fence)
  added[#added + 1] = int(weight) .. ':' .. ticket .. ':' .. client
  return fence
end

-- Tells client c that its ticket t got token (0: refused): in 'mine' (ticket, token pairs) for this
-- client, which reads them from the reply, by a notice on its channel for any other.
local function tell(c, t, token, mine)
  if c == me then
    mine[#mine + 1] = tonumber(t)
    mine[#mine + 1] = token
  else
    redis.call('PUBLISH', prefix .. 'wake:' .. c, t .. ':' .. int(token))
  end
end

-- The capacity shrank since the last call (this process was told a smaller one): tickets heavier than
-- it can never be granted, wherever they are in the queue, and are refused now. Otherwise a full
-- semaphore (or one shrunk to 0) would never reach them, and their callers would wait forever.
local function refuseTooHeavy(mine)
  if stored == nil or stored <= capacity or waiting == 0 then return end
  stored = capacity
  for _, member in ipairs(redis.call('ZRANGE', queue, 0, -1)) do
    local w, t, c = string.match(member, '^%d+:(%d+):(%d+):(.+)$')
    if tonumber(w) > capacity then
      redis.call('ZREM', queue, member)
      waiting = waiting - 1
      tell(c, t, 0, mine)
    end
  end
end

-- Serves tickets from the head while the head fits; stops at the first that does not (head-of-line).
-- Grants to this client are returned in 'mine' (ticket, token pairs) instead of going through its list.
local function dispatch(mine)
  refuseTooHeavy(mine)
  if guarded() then return end
  while waiting > 0 and used < capacity do
    local popped = redis.call('ZPOPMIN', queue)
    local member, score = popped[1], popped[2]
    if not member then waiting = 0 break end
    local w, t, c = string.match(member, '^%d+:(%d+):(%d+):(.+)$')
    w = tonumber(w)
    local token
    if w > capacity then
      -- Another process configured a smaller capacity: this ticket can never fit. Token 0 refuses it.
      waiting = waiting - 1
      token = 0
    elseif w > capacity - used then
      redis.call('ZADD', queue, score, member)
      break
    else
      waiting = waiting - 1
      token = grant(w, t, c)
    end
    tell(c, t, token, mine)
  end
end

-- Removes everything the given clients hold or wait for (their leases ended).
local function evict(dead)
  local isDead = {}
  for _, c in ipairs(dead) do isDead[c] = true end
  local all = redis.call('HGETALL', meta)
  for i = 1, #all, 2 do
    local field = all[i]
    if string.sub(field, 1, 2) == 'h:' then
      local w, c = string.match(all[i + 1], '^(%d+):%d+:(.+)$')
      if isDead[c] then
        redis.call('HDEL', meta, field)
        used = used - tonumber(w)
      end
    end
  end
  if waiting > 0 then
    for _, member in ipairs(redis.call('ZRANGE', queue, 0, -1)) do
      local c = string.match(member, '^%d+:%d+:%d+:(.+)$')
      if isDead[c] then
        redis.call('ZREM', queue, member)
        waiting = waiting - 1
      end
    end
  end
  redis.call('ZREM', clients, unpack(dead))
end

-- Evicts every client whose lease has ended.
local function purge()
  local dead = redis.call('ZRANGEBYSCORE', clients, '-inf', '(' .. int(now()))
  if #dead > 0 then evict(dead) end
end

local function register()
  redis.call('ZADD', clients, now() + leaseUs, me)
end
`;

const ACQUIRE_SHORT = `
-- The common case first, before the general code below is even set up: one request that fits at once,
-- nobody waiting, no restart guard, no lease to write, the capacity as last stored. The effect is the
-- general path's (fence + 1, used + weight, one holder field); only the work is less. The read is the
-- one load() makes, so the general path does not read again.
local read
if #ARGV == 11 and ARGV[8] == '0' then
  read = ${readState("'used'")}
  local used, weight, capacity = tonumber(read[1]), tonumber(ARGV[9]), tonumber(ARGV[3])
  if used and read[4] == '0' and read[5] == '0' and tonumber(read[7]) == capacity and used + weight <= capacity then
    local fence = tonumber(read[2]) + 1
    local token = string.format('%.0f', fence)
    redis.call('HSET', KEYS[1], 'used', used + weight, 'fence', token, 'h:' .. token,
      string.format('%.0f', weight) .. ':' .. ARGV[11] .. ':' .. ARGV[2])
    return {1, 1, fence, tonumber(read[3])}
  end
end
`;

const ACQUIRE_GENERAL = `${PRELUDE}
local mode = ARGV[7]
if not load(nil, read) then create() end
if ARGV[8] == '1' or created then register() end
local function fits(weight, score)
  if guarded() or weight > capacity - used then return false end
  if waiting == 0 then return true end
  -- A request that sorts to the head and fits is served at once; equal priority waits its turn.
  local head = redis.call('ZRANGE', queue, 0, 0, 'WITHSCORES')
  return head[2] == nil or tonumber(head[2]) > score
end
local n = (#ARGV - 8) / 3
local out = {n}
-- Grants the purge below may make to this client's own queued tickets travel back in the reply.
local mine = {}
for i = 0, n - 1 do
  local weight, score, ticket = tonumber(ARGV[9 + 3 * i]), tonumber(ARGV[10 + 3 * i]), ARGV[11 + 3 * i]
  local ok = fits(weight, score)
  if not ok and mode == 'try' then
    -- Before refusing, make sure it is not a dead process's permits that block (try has no waiting to
    -- notice them later).
    purge()
    dispatch(mine)
    ok = fits(weight, score)
  end
  if ok then
    out[#out + 1], out[#out + 2], out[#out + 3] = 1, grant(weight, ticket, me), seq
  elseif mode == 'try' then
    out[#out + 1], out[#out + 2], out[#out + 3] = 0, 0, 0
  else
    seq = seq + 1
    local member = string.format('%016.0f', seq) .. ':' .. int(weight) .. ':' .. ticket .. ':' .. me
    redis.call('ZADD', queue, score, member)
    waiting = waiting + 1
    if waiting == 1 then redis.call('PEXPIRE', queue, keyTtl) end
    out[#out + 1], out[#out + 2], out[#out + 3] = 2, seq, ready
  end
end
save()
for i = 1, #mine do out[#out + 1] = mine[i] end
return out
`;

/**
 * ARGV 7 mode (`try` | `wait`), 8 register (`1` when this client's lease must be (re)written), then one
 * triple per request, in arrival order: weight, score (-priority), ticket (this client's number for the
 * request; 0 for `try`). `try` sends exactly one. Several `wait` requests arrive together — one script
 * for all the callers of a process that asked in the same tick — and queue in the order given, so
 * batching changes the Redis work, not the order.
 *
 * Returns `{n, then per request: status, value, third}` — `1, token, seq` granted (`seq`: the last
 * ticket number handed out, so tickets up to it arrived earlier: what a FIFO check of the grant order
 * needs), `0, 0, 0` busy (try), `2, seq, ready` queued (`ready`: the restart guard's end, or 0) — then
 * the grants a purge made to this client's own tickets (ticket, token pairs).
 */
export const ACQUIRE = ACQUIRE_SHORT + ACQUIRE_GENERAL;

/** @internal ACQUIRE without its short path, for the test that checks both paths agree. */
export const ACQUIRE_WITHOUT_SHORT_PATH = `local read\n${ACQUIRE_GENERAL}`;

const RELEASE_SHORT = `
-- The common case first: nobody waiting, no restart guard, the capacity as last stored, so there is
-- nothing to hand on; the holder's field goes and \`used\` drops, as the general path below would do.
-- The read is the one load() makes, so the general path does not read again.
local read = ${readState("'h:' .. ARGV[7]")}
if read[4] == '0' and read[5] == '0' and tonumber(read[7]) == tonumber(ARGV[3]) then
  if not read[6] then return {0} end
  redis.call('HDEL', KEYS[1], 'h:' .. ARGV[7])
  redis.call('HSET', KEYS[1], 'used', tonumber(read[1]) - tonumber(string.match(read[6], '^(%d+)')))
  return {1}
end
`;

const RELEASE_GENERAL = `${PRELUDE}
local exists, holder = load('h:' .. ARGV[7], read)
if not exists then return {0} end
local mine = {0}
if holder then
  redis.call('HDEL', meta, 'h:' .. ARGV[7])
  used = used - tonumber(string.match(holder, '^(%d+)'))
  mine[1] = 1
end
dispatch(mine)
save()
return mine
`;

/** ARGV 7 token. Returns `{removed}` followed by self-grants (ticket, token pairs). */
export const RELEASE = RELEASE_SHORT + RELEASE_GENERAL;

/** @internal RELEASE without its short path, for the test that checks both paths agree. */
export const RELEASE_WITHOUT_SHORT_PATH = `local read\n${RELEASE_GENERAL}`;

/**
 * ARGV 7 ticket member. Returns `{status}` followed by self-grants: 1 the ticket left the queue, 2 it had
 * been granted already and the grant was given back, 0 neither (refused, evicted, or gone with the state).
 */
export const CANCEL = `${PRELUDE}
if not load() then return {0} end
local mine = {redis.call('ZREM', queue, ARGV[7])}
if mine[1] == 1 then
  waiting = waiting - 1
  -- The cancelled ticket may have been the head that blocked the others.
  dispatch(mine)
  save()
  return mine
end
-- Granted before the cancel arrived, to a caller who has left: give the weight back now rather than
-- count on the grant's notice reaching this client (a notice published while its connection was down
-- is lost, and nobody would release a grant nobody knows of before the lease ends).
local holder = string.match(ARGV[7], '^%d+:(%d+:%d+:.+)$')
local all = redis.call('HGETALL', meta)
for i = 1, #all, 2 do
  if all[i + 1] == holder and string.sub(all[i], 1, 2) == 'h:' then
    redis.call('HDEL', meta, all[i])
    used = used - tonumber(string.match(holder, '^(%d+)'))
    mine[1] = 2
    dispatch(mine)
    save()
    break
  end
end
return mine
`;

/**
 * ARGV 7 mode: `renew` (keep this client's lease, evict the dead, dispatch) or `leave` (drop everything
 * this client holds or waits for). Returns `{lost, now, earliestOtherLeaseEnd, ready, n}`, then n numbers
 * of self-grants (ticket, token pairs), then every grant Redis holds for this client as (token, ticket)
 * pairs: the process takes up those whose notice it never got and releases those nobody here wants.
 * `lost` = 1 when this client's lease had already ended (or the state was gone): its holders and
 * tickets are no longer in Redis.
 */
export const HEARTBEAT = `${PRELUDE}
local mode = ARGV[7]
local exists = load()
if not exists then
  if mode == 'leave' then return {1, now(), 0, 0} end
  create()
end
local lease = redis.call('ZSCORE', clients, me)
local lost = 0
if not exists or not lease or tonumber(lease) < now() then lost = 1 end
if mode == 'leave' or lost == 1 then evict({me}) end
purge()
if mode ~= 'leave' then register() end
local mine = {lost, now(), 0, ready, 0}
dispatch(mine)
mine[5] = #mine - 5
save()
redis.call('PEXPIRE', meta, keyTtl)
redis.call('PEXPIRE', clients, keyTtl)
if waiting > 0 then redis.call('PEXPIRE', queue, keyTtl) end
local first = redis.call('ZRANGE', clients, 0, 1, 'WITHSCORES')
for i = 1, #first, 2 do
  if first[i] ~= me then mine[3] = tonumber(first[i + 1]) break end
end
-- The grants Redis holds for this client: the safety net for a grant notice that never arrived.
if mode ~= 'leave' then
  local all = redis.call('HGETALL', meta)
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, 2) == 'h:' then
      local t, c = string.match(all[i + 1], '^%d+:(%d+):(.+)$')
      if c == me then
        mine[#mine + 1] = tonumber(string.sub(all[i], 3))
        mine[#mine + 1] = tonumber(t)
      end
    end
  end
end
mine[4] = ready
return mine
`;

/** Read-only snapshot for inspect(): `{now, metaFlat, queueFlatWithScores, clientsFlatWithScores}`. */
export const INSPECT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
return {now, redis.call('HGETALL', KEYS[1]), redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES'),
  redis.call('ZRANGE', KEYS[3], 0, -1, 'WITHSCORES')}
`;
