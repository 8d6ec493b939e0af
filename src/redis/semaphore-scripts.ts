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
 *     `slots`    the fencing slots, one character each: `1` taken, `0` free (see "fencing slots").
 *                Invariant: the `1`s are exactly the slots listed by the `h:*` fields.
 *     `epoch`    the server time (µs) the state was created at. A process that sees it change knows the
 *                state it queued or held in was lost (restart, flush, expiry) and squares up at once.
 *     `h:<token>` one field per holder: `<weight>:<ticket>:<slots>:<client>` (`ticket` 0 for tryAcquire,
 *                whose grant only ever travels in its own reply; `slots` comma-separated, maybe empty).
 * - `<prefix>{<name>}:queue` ZSET of waiting tickets: member `<seq, 16 digits>:<weight>:<ticket>:<client>`,
 *     score `-priority`. Equal scores sort by member, so the zero-padded seq makes equal priorities FIFO.
 * - `<prefix>{<name>}:clients` ZSET: client id -> lease expiry (server µs). One lease per process covers
 *     all of its holders and tickets, so renewing costs one script per process, not one per permit.
 * - `<prefix>{<name>}:wake:<client>` is a pub/sub channel, not a key: grant notices
 *     `<ticket>:<token>:<slots>:<key part>` are PUBLISHed there for that client's subscribed connection
 *     (`<key part>` names the key, see "keyed"; empty for a RedisSemaphore). Nothing is stored, so nothing
 *     needs an expiry; a notice nobody hears is handled as below.
 *
 * Keyed: a RedisKeyedSemaphore runs the same scripts on each of its keys: key `k` is `meta` and `queue`
 * at `<prefix>{<name>}:k:<k>:meta` and `...:queue` (KEYS 1 and 2), with the keyed semaphore's one
 * `clients` and one channel per process, so one lease covers a process's permits and tickets on every key
 * and one check-in script renews it over many keys (HEARTBEAT). Tickets are numbered per process across
 * keys. Since `clients` is shared, a purge on one key cannot forget a dead process at once (its entries
 * on other keys must still be found dead): an ended lease stays in `clients`, expired, for two `keyTtl`;
 * by then every key that still held its entries was either purged (any check-in on it purges) or expired.
 * A process that leaves marks its lease ended the same way (ARGV 6, third flag).
 *
 * `seq` is Redis' (it orders the queue); `ticket` is the process's own number for the request, sent with
 * the acquire. Grants name the ticket, not the seq, because a grant can overtake the acquire's reply: the
 * notice travels on the process's subscribed connection, the reply on its command connection, and nothing
 * orders two sockets. A process that learned its seq only from the reply could not tell a grant for a
 * request whose reply is still on its way from one for a request it abandoned. Holders keep their
 * ticket too, so a heartbeat can hand over a grant whose notice was lost (see HEARTBEAT).
 *
 * Dead waiters: when PUBLISH says nobody heard a notice (its count is 0: the process was killed and
 * its connection closed, or it is not subscribed), the grant is not made and the ticket leaves the
 * queue, so the weight goes on to the next ticket at once instead of sitting with a dead process
 * until its lease ends. A live process that was merely reconnecting finds its ticket missing at its next
 * check-in and queues again. This runs only where the count is exact (`deliveryCounted`): one server, or
 * sharded notices; on a Cluster with plain PUBLISH the count covers only the local node.
 *
 * Fencing slots: a semaphore of capacity K admits up to K holders at once, so one "highest token seen"
 * cannot tell a stale holder from an older valid one. Each grant of weight w takes w slots (the lowest
 * free ones, so slots stay below the capacity), freed when the holder leaves. A slot is held by one grant
 * at a time, and tokens increase, so the valid holder of a slot always has the highest token any grant of
 * that slot ever had: a resource that keeps the highest token per slot, and refuses a token lower than
 * that of any of its slots, refuses every stale holder once its slot was given again, and never a valid one.
 * Slots are kept for capacities up to {@link MAX_FENCED_CAPACITY}; above that, grants carry none.
 *
 * Every key expires (`keyTtl`) unless some process keeps using the semaphore; heartbeats refresh them.
 *
 * Fencing tokens and ticket numbers start from the server clock in µs when the state is created, so
 * they keep increasing even when the state is lost (restart without persistence, expiry after idling):
 * Redis runs far fewer than one script per µs, so the counters never outrun the clock.
 *
 * Restart guard: when `meta` is missing and the server has been up for less than one lease, holders
 * from before a restart may still be working, unaware that their state is gone. Nothing is granted
 * until a lease has passed since the latest moment the server can have started; those holders fail to
 * renew by then and stop.
 */

/** The largest capacity Redis counts exactly: Infinity is stored as this. */
export const UNLIMITED = Number.MAX_SAFE_INTEGER;

/** The largest capacity whose grants carry fencing slots (one slot per unit of weight). */
export const MAX_FENCED_CAPACITY = 1024;

/**
 * The one read of a semaphore's state, as Lua: `used, fence, seq, waiting, ready, <extra>, capacity,
 * slots, epoch`. load() and the short paths make the same read (the general path reuses a short path's),
 * so the field order lives here once.
 */
const readState = (extra: string, meta = "KEYS[1]") =>
  `redis.call('HMGET', ${meta}, 'used', 'fence', 'seq', 'waiting', 'ready', ${extra}, 'capacity', 'slots', 'epoch')`;

/**
 * Slot bookkeeping, shared by the short paths and the general code: pure functions over the `slots`
 * string, so a caller can compute a grant's slots and commit them only once it knows the grant is made.
 */
const SLOTS = `
-- Takes the w lowest free slots of s (capacity at most ${MAX_FENCED_CAPACITY}; otherwise none): the new
-- string and the slots taken, comma-separated (slot numbers count from 0).
local function takeSlots(s, w, cap)
  if cap > ${MAX_FENCED_CAPACITY} then return s, '' end
  local taken = {}
  local from = 1
  for k = 1, w do
    local i = string.find(s, '0', from, true)
    if i then
      s = string.sub(s, 1, i - 1) .. '1' .. string.sub(s, i + 1)
    else
      s = s .. '1'
      i = #s
    end
    taken[k] = i - 1
    from = i + 1
  end
  return s, table.concat(taken, ',')
end

-- Frees the slots listed (comma-separated) in s.
local function freeSlots(s, list)
  for n in string.gmatch(list, '%d+') do
    local i = tonumber(n) + 1
    if i <= #s then s = string.sub(s, 1, i - 1) .. '0' .. string.sub(s, i + 1) end
  end
  return s
end

-- A holder field's value: weight, ticket, slots, client.
local function holderOf(value)
  local w, t, sl, c = string.match(value, '^(%d+):(%d+):([%d,]*):(.+)$')
  -- A holder written before slots existed: no slots.
  if not w then
    w, t, c = string.match(value, '^(%d+):(%d+):(.+)$')
    sl = ''
  end
  return tonumber(w), t, sl, c
end
`;

/** Notices go by `PUBLISH`, or by `SPUBLISH` for sharded notices. */
export type Publish = "PUBLISH" | "SPUBLISH";

const prelude = (publish: Publish) => `
local meta, queue, clients = KEYS[1], KEYS[2], KEYS[3]
local prefix, me = ARGV[1], ARGV[2]
local capacity = tonumber(ARGV[3])
local leaseUs = tonumber(ARGV[4]) * 1000
local keyTtl = tonumber(ARGV[5])
-- ARGV[6]: one flag per character: the restart guard, whether PUBLISH counts every listener, and
-- whether \`clients\` is shared by several keys (a keyed semaphore; see "keyed").
local guardRestarts = string.sub(ARGV[6], 1, 1) == '1'
local deliveryCounted = string.sub(ARGV[6], 2, 2) == '1'
local keyed = string.sub(ARGV[6], 3, 3) == '1'

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

local used, fence, seq, waiting, ready, slots, epoch
-- The slots as read: \`slots\` is written back only when it changed (a missing field reads as none taken).
local slotsRead
-- The capacity the last call wrote (nil before the first).
local stored
local added = {}
local created = false

-- Reads the state; false when it does not exist. \`read\` is that HMGET's reply if the script made it already.
local function load(extra, read)
  local m = read or ${readState("extra or 'used'", "meta")}
  if not m[1] then return false, nil end
  used, fence, seq, waiting, ready = tonumber(m[1]), tonumber(m[2]), tonumber(m[3]), tonumber(m[4]), tonumber(m[5])
  stored = tonumber(m[7])
  slots = m[8] or ''
  slotsRead = slots
  epoch = tonumber(m[9]) or 0
  return true, m[6]
end

local function create()
  created = true
  used, fence, seq, epoch = 0, now(), now(), now()
  slots, slotsRead = '', ''
  -- The epoch never changes after this, so it is written once (the short paths never touch it).
  added[#added + 1] = 'epoch'
  added[#added + 1] = int(epoch)
  waiting = redis.call('ZCARD', queue)
  ready = 0
  if guardRestarts then
    local uptime = tonumber(string.match(redis.call('INFO', 'server'), 'uptime_in_seconds:(%d+)')) or 0
    -- uptime is a difference of whole wall-clock seconds: it can read 1 only a few ms after the start, so
    -- the server started at most one second after now - uptime. The guard counts from that latest start.
    local guardUntil = now() - uptime * 1000000 + 1000000 + leaseUs + leaseUs / 50 + 10000
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
  if slots ~= slotsRead then
    added[#added + 1] = 'slots'
    added[#added + 1] = slots
  end
  redis.call('HSET', meta, 'used', used, 'fence', fence, 'seq', seq, 'waiting', waiting, 'ready', ready,
    'capacity', capacity, unpack(added))
  if created then
    redis.call('PEXPIRE', meta, keyTtl)
    redis.call('PEXPIRE', clients, keyTtl)
  end
end

-- Records a grant of token (already reserved by the caller) with its slots string after the grant.
local function commit(token, weight, ticket, client, newSlots, list)
  fence = token
  used = used + weight
  slots = newSlots
  added[#added + 1] = 'h:' .. int(token)
  added[#added + 1] = int(weight) .. ':' .. ticket .. ':' .. list .. ':' .. client
end

-- Grants weight to this client's own request; returns the token and the slots.
local function grant(weight, ticket)
  local newSlots, list = takeSlots(slots, weight, capacity)
  commit(fence + 1, weight, ticket, me, newSlots, list)
  return fence, list
end

-- Tells client c that its ticket t got token (0: refused) with slots: in 'mine' (ticket, token, slots
-- triples) for this client, which reads them from the reply, by a notice on its channel for any other.
-- Returns false when nobody heard the notice and the count is exact: the grant must not be made.
local function tell(c, t, token, list, mine)
  if c == me then
    mine[#mine + 1] = tonumber(t)
    mine[#mine + 1] = token
    mine[#mine + 1] = list
    return true
  end
  -- The notice ends with the key's part of the name (\`k:<key>\`, empty for a RedisSemaphore).
  local heard = redis.call('${publish}', prefix .. 'wake:' .. c,
    t .. ':' .. int(token) .. ':' .. list .. ':' .. string.sub(meta, #prefix + 1, -6))
  return heard > 0 or not deliveryCounted
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
      tell(c, t, 0, '', mine)
    end
  end
end

-- Serves tickets from the head while the head fits; stops at the first that does not (head-of-line).
-- Grants to this client are returned in 'mine' instead of a notice. A ticket whose process hears no
-- notice (see "dead waiters") leaves the queue ungranted, and the next one is served.
local function dispatch(mine)
  refuseTooHeavy(mine)
  if guarded() then return end
  while waiting > 0 and used < capacity do
    local popped = redis.call('ZPOPMIN', queue)
    local member, score = popped[1], popped[2]
    if not member then waiting = 0 break end
    local w, t, c = string.match(member, '^%d+:(%d+):(%d+):(.+)$')
    w = tonumber(w)
    if w > capacity then
      -- Another process configured a smaller capacity: this ticket can never fit. Token 0 refuses it.
      waiting = waiting - 1
      tell(c, t, 0, '', mine)
    elseif w > capacity - used then
      redis.call('ZADD', queue, score, member)
      break
    else
      waiting = waiting - 1
      local newSlots, list = takeSlots(slots, w, capacity)
      if tell(c, t, fence + 1, list, mine) then commit(fence + 1, w, t, c, newSlots, list) end
    end
  end
end

-- Removes everything the clients in isDead (a set) hold or wait for in this key (their leases ended).
local function evict(isDead)
  local all = redis.call('HGETALL', meta)
  for i = 1, #all, 2 do
    local field = all[i]
    if string.sub(field, 1, 2) == 'h:' then
      local w, _, list, c = holderOf(all[i + 1])
      if isDead[c] then
        redis.call('HDEL', meta, field)
        used = used - w
        slots = freeSlots(slots, list)
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
end

-- Evicts from this key every client whose lease has ended. A semaphore forgets them at once; a keyed
-- one keeps their expired leases as markers for two key lifetimes, since other keys may still hold
-- their entries: a key not touched for that long has expired, and one touched was purged.
local function purge()
  local dead = redis.call('ZRANGEBYSCORE', clients, '-inf', '(' .. int(now()))
  if #dead == 0 then return end
  local isDead = {}
  for _, c in ipairs(dead) do isDead[c] = true end
  evict(isDead)
  if not keyed then redis.call('ZREM', clients, unpack(dead))
  else redis.call('ZREMRANGEBYSCORE', clients, '-inf', '(' .. int(now() - 2000 * keyTtl)) end
end

-- This client leaves (or its lease ended): forgotten at once, or marked as ended (see purge).
local function unregister()
  if keyed then redis.call('ZADD', clients, now() - 1, me)
  else redis.call('ZREM', clients, me) end
end

local function register()
  redis.call('ZADD', clients, now() + leaseUs, me)
end
`;

/**
 * ARGV 7 mode (`try` | `wait`), 8 register (`1` when this client's lease must be (re)written), then one
 * triple per request, in arrival order: weight, score (-priority), ticket (this client's number for the
 * request; 0 for `try`). `try` sends exactly one. Several `wait` requests arrive together — one script
 * for all the callers of a process that asked in the same tick — and queue in the order given, so
 * batching changes the Redis work, not the order.
 *
 * Returns `{n, epoch, then per request: status, value, third, slots}` — `1, token, seq, slots` granted
 * (`seq`: the last ticket number handed out, so tickets up to it arrived earlier: what a FIFO check of the
 * grant order needs), `0, 0, ready, ''` busy (try), `2, seq, ready, ''` queued (`ready`: the restart guard's
 * end, or 0) — then the grants a purge made to this client's own tickets (ticket, token, slots triples).
 */
const ACQUIRE_SHORT = `
-- The common case first, before the general code below is even set up: one request that fits at once,
-- nobody waiting, no restart guard, no lease to write, the capacity as last stored. The effect is the
-- general path's (fence + 1, used + weight, its slots, one holder field); only the work is less. The read
-- is the one load() makes, so the general path does not read again.
local read
if #ARGV == 11 and ARGV[8] == '0' then
  read = ${readState("'used'")}
  local used, weight, capacity = tonumber(read[1]), tonumber(ARGV[9]), tonumber(ARGV[3])
  if used and read[4] == '0' and read[5] == '0' and tonumber(read[7]) == capacity and used + weight <= capacity then
    local fence = tonumber(read[2]) + 1
    local token = string.format('%.0f', fence)
    local slots, list = takeSlots(read[8] or '', weight, capacity)
    local fields = {'used', used + weight, 'fence', token, 'h:' .. token,
      string.format('%.0f', weight) .. ':' .. ARGV[11] .. ':' .. list .. ':' .. ARGV[2]}
    if list ~= '' then fields[7], fields[8] = 'slots', slots end
    redis.call('HSET', KEYS[1], unpack(fields))
    return {1, tonumber(read[9]) or 0, 1, fence, tonumber(read[3]), list}
  end
end
`;

const acquireGeneral = (publish: Publish) => `${prelude(publish)}
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
local out = {n, epoch}
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
  local at = #out
  if ok then
    local token, list = grant(weight, ticket)
    out[at + 1], out[at + 2], out[at + 3], out[at + 4] = 1, token, seq, list
  elseif mode == 'try' then
    out[at + 1], out[at + 2], out[at + 3], out[at + 4] = 0, 0, ready, ''
  else
    seq = seq + 1
    local member = string.format('%016.0f', seq) .. ':' .. int(weight) .. ':' .. ticket .. ':' .. me
    redis.call('ZADD', queue, score, member)
    waiting = waiting + 1
    if waiting == 1 then redis.call('PEXPIRE', queue, keyTtl) end
    out[at + 1], out[at + 2], out[at + 3], out[at + 4] = 2, seq, ready, ''
  end
end
save()
for i = 1, #mine do out[#out + 1] = mine[i] end
return out
`;

/** RELEASE: ARGV 7 token. Returns `{removed}` followed by self-grants (ticket, token, slots triples). */
const RELEASE_SHORT = `
-- The common case first: nobody waiting, no restart guard, the capacity as last stored, so there is
-- nothing to hand on; the holder's field goes, its slots are freed and \`used\` drops, as the general path
-- below would do. The read is the one load() makes, so the general path does not read again.
local read = ${readState("'h:' .. ARGV[7]")}
if read[4] == '0' and read[5] == '0' and tonumber(read[7]) == tonumber(ARGV[3]) then
  if not read[6] then return {0} end
  local w, _, list = holderOf(read[6])
  redis.call('HDEL', KEYS[1], 'h:' .. ARGV[7])
  if list == '' then redis.call('HSET', KEYS[1], 'used', tonumber(read[1]) - w)
  else redis.call('HSET', KEYS[1], 'used', tonumber(read[1]) - w, 'slots', freeSlots(read[8] or '', list)) end
  return {1}
end
`;

const releaseGeneral = (publish: Publish) => `${prelude(publish)}
local exists, holder = load('h:' .. ARGV[7], read)
if not exists then return {0} end
local mine = {0}
if holder then
  local w, _, list = holderOf(holder)
  redis.call('HDEL', meta, 'h:' .. ARGV[7])
  used = used - w
  slots = freeSlots(slots, list)
  mine[1] = 1
end
dispatch(mine)
save()
return mine
`;

/**
 * ARGV 7 ticket member. Returns `{status}` followed by self-grants: 1 the ticket left the queue, 2 it had
 * been granted already and the grant was given back, 0 neither (refused, evicted, or gone with the state).
 */
const cancel = (publish: Publish) => `${SLOTS}${prelude(publish)}
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
local weight, ticket, client = string.match(ARGV[7], '^%d+:(%d+):(%d+):(.+)$')
local all = redis.call('HGETALL', meta)
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 2) == 'h:' then
    local w, t, list, c = holderOf(all[i + 1])
    if t == ticket and c == client and w == tonumber(weight) then
      redis.call('HDEL', meta, all[i])
      used = used - w
      slots = freeSlots(slots, list)
      mine[1] = 2
      dispatch(mine)
      save()
      break
    end
  end
end
return mine
`;

/**
 * The check-in of this client over one or more keys of the semaphore (all it holds or waits on; a
 * RedisSemaphore has one). KEYS: the first key's `meta` and `queue`, `clients`, then `meta` and `queue`
 * of each further key. ARGV 7 mode: `renew` (keep this client's lease, evict the dead, dispatch) or
 * `leave` (drop everything this client holds or waits for); ARGV 8 one character per key, `1` to list
 * this client's queued tickets in it.
 *
 * Returns `{lost, now, earliestOtherLeaseEnd, keys}`, then for each key `{ready, epoch, created, n, m, q}`
 * followed by n values of self-grants (ticket, token, slots triples), m values: every grant Redis holds
 * for this client as (token, ticket, slots) triples — the process takes up those whose notice it never
 * got, releases those nobody here wants, and learns that a permit it holds is gone when its token is
 * missing — and q values: the tickets this client has in the queue (when asked), so it can queue again
 * those that were lost. `lost` = 1 when this client's lease had already ended: its holders and tickets
 * are no longer in Redis. `created` = 1 when the key's state was gone (recreated now): the same, for
 * that key.
 */
const heartbeat = (publish: Publish) => `${SLOTS}${prelude(publish)}
local mode = ARGV[7]
local lease = redis.call('ZSCORE', clients, me)
local lost = 0
if not lease or tonumber(lease) < now() then lost = 1 end
if mode == 'leave' then unregister() else register() end
local out = {lost, now(), 0, 0}
local function checkIn(listQueued)
  added, created, stored = {}, false, nil
  local exists = load()
  local at = #out
  if not exists then
    if mode == 'leave' then
      out[at + 1], out[at + 2], out[at + 3], out[at + 4], out[at + 5], out[at + 6] = 0, 0, 0, 0, 0, 0
      return
    end
    create()
  end
  if mode == 'leave' or lost == 1 then evict({[me] = true}) end
  purge()
  local mine = {}
  dispatch(mine)
  save()
  redis.call('PEXPIRE', meta, keyTtl)
  if waiting > 0 then redis.call('PEXPIRE', queue, keyTtl) end
  local holding, queued = {}, {}
  if mode ~= 'leave' then
    -- The grants Redis holds for this client: the safety net for a grant notice that never arrived.
    local all = redis.call('HGETALL', meta)
    for i = 1, #all, 2 do
      if string.sub(all[i], 1, 2) == 'h:' then
        local _, t, list, c = holderOf(all[i + 1])
        if c == me then
          holding[#holding + 1] = tonumber(string.sub(all[i], 3))
          holding[#holding + 1] = tonumber(t)
          holding[#holding + 1] = list
        end
      end
    end
    if listQueued and waiting > 0 then
      for _, member in ipairs(redis.call('ZRANGE', queue, 0, -1)) do
        local t, c = string.match(member, '^%d+:%d+:(%d+):(.+)$')
        if c == me then queued[#queued + 1] = tonumber(t) end
      end
    end
  end
  out[at + 1], out[at + 2], out[at + 3] = ready, epoch, created and 1 or 0
  out[at + 4], out[at + 5], out[at + 6] = #mine, #holding, #queued
  for _, part in ipairs({mine, holding, queued}) do
    for i = 1, #part do out[#out + 1] = part[i] end
  end
end
local n = (#KEYS - 1) / 2
for j = 1, n do
  if j > 1 then meta, queue = KEYS[2 * j], KEYS[2 * j + 1] end
  checkIn(string.sub(ARGV[8], j, j) == '1')
  out[4] = j
end
redis.call('PEXPIRE', clients, keyTtl)
local first = redis.call('ZRANGEBYSCORE', clients, '(' .. int(now()), '+inf', 'WITHSCORES', 'LIMIT', 0, 2)
for i = 1, #first, 2 do
  if first[i] ~= me then out[3] = tonumber(first[i + 1]) break end
end
return out
`;

/** Read-only snapshot for inspect(): `{now, metaFlat, queueFlatWithScores, clientsFlatWithScores}`. */
export const INSPECT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
return {now, redis.call('HGETALL', KEYS[1]), redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES'),
  redis.call('ZRANGE', KEYS[3], 0, -1, 'WITHSCORES')}
`;

/** The sources of the scripts that may tell other processes of a grant. */
export interface NotifyingSources {
  acquire: string;
  release: string;
  cancel: string;
  heartbeat: string;
  /** @internal `acquire` without its short path, for the test that checks both paths agree. */
  acquireWithoutShortPath: string;
  /** @internal `release` without its short path, likewise. */
  releaseWithoutShortPath: string;
}

/**
 * The scripts for one way of telling a process of its grant: `PUBLISH`, or `SPUBLISH` for sharded
 * notices (the one parameter of the template).
 */
export function notifyingSources(publish: Publish): NotifyingSources {
  return {
    acquire: SLOTS + ACQUIRE_SHORT + acquireGeneral(publish),
    release: SLOTS + RELEASE_SHORT + releaseGeneral(publish),
    cancel: cancel(publish),
    heartbeat: heartbeat(publish),
    acquireWithoutShortPath: `${SLOTS}local read\n${acquireGeneral(publish)}`,
    releaseWithoutShortPath: `${SLOTS}local read\n${releaseGeneral(publish)}`,
  };
}

const published = notifyingSources("PUBLISH");
/** The scripts with plain `PUBLISH` notices (the default), by name. */
export const { acquire: ACQUIRE, release: RELEASE, cancel: CANCEL, heartbeat: HEARTBEAT } = published;
/** @internal */
export const {
  acquireWithoutShortPath: ACQUIRE_WITHOUT_SHORT_PATH,
  releaseWithoutShortPath: RELEASE_WITHOUT_SHORT_PATH,
} = published;
