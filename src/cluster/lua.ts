// Lua scripts: every ownership step and every write to shared state is one atomic call, and
// every owner-side write checks the lease holder and fencing epoch in the same call (fail closed).
// Keys are built from the prefix inside the scripts (single Redis, not Redis Cluster). One file for
// every concern on purpose: the scripts share one key layout (the commits of handoff/ and
// dead-letters/ check the lease and epoch keys of membership/), which reads best in one place.

/** ARGV: prefix, node, leaseMs, shard... → epoch per shard (0 = held by another node).
 *  Refuses everything during the quiet period after Redis lost its data (see HEARTBEAT). */
export const ACQUIRE = `
local p, node, ms = ARGV[1], ARGV[2], tonumber(ARGV[3])
local out = {}
if redis.call('EXISTS', p .. 'quiet') == 1 then
  for i = 4, #ARGV do out[#out + 1] = 0 end
  return out
end
for i = 4, #ARGV do
  local lk = p .. 'lease:' .. ARGV[i]
  local ok = redis.call('SET', lk, node, 'NX', 'PX', ms)
  if not ok and redis.call('GET', lk) == node then
    redis.call('SET', lk, node, 'PX', ms)
    ok = true
  end
  if ok then
    local e = redis.call('INCR', p .. 'epoch:' .. ARGV[i])
    redis.call('HSET', p .. 'leasemeta', ARGV[i], node .. '|' .. e .. '|' .. redis.call('TIME')[1])
    out[#out + 1] = e
  else
    out[#out + 1] = 0
  end
end
return out`;

/** ARGV: prefix, node, leaseMs, shard1, epoch1, shard2, epoch2... → 1/0 per shard. One call renews all.
 *  Lease AND epoch both missing means Redis lost its data (an epoch key is never deleted): the
 *  holder, still inside its own self-fenced validity, reclaims the shard with its epoch. No one
 *  else can hold it: acquisitions wait out the quiet period, by which time every other former
 *  holder has self-fenced. */
export const RENEW = `
local p, node, ms = ARGV[1], ARGV[2], tonumber(ARGV[3])
local out = {}
for i = 4, #ARGV, 2 do
  local lk = p .. 'lease:' .. ARGV[i]
  local ek = p .. 'epoch:' .. ARGV[i]
  if redis.call('GET', lk) == node and redis.call('GET', ek) == ARGV[i + 1] then
    redis.call('PEXPIRE', lk, ms)
    out[#out + 1] = 1
  elseif redis.call('EXISTS', lk) == 0 and redis.call('EXISTS', ek) == 0 then
    redis.call('SET', lk, node, 'PX', ms)
    redis.call('SET', ek, ARGV[i + 1])
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out`;

/** ARGV: prefix, node, shard, epoch → 1 released / 0 not ours any more. */
export const RELEASE = `
local p, node = ARGV[1], ARGV[2]
local lk = p .. 'lease:' .. ARGV[3]
if redis.call('GET', lk) == node and redis.call('GET', p .. 'epoch:' .. ARGV[3]) == ARGV[4] then
  redis.call('DEL', lk)
  return 1
end
return 0`;

/** Commit of processed stream entries. ARGV: prefix, node, shard, epoch, entryId... → 1 / 0 (fenced). */
export const ACK = `
local p, node = ARGV[1], ARGV[2]
if redis.call('GET', p .. 'lease:' .. ARGV[3]) ~= node or redis.call('GET', p .. 'epoch:' .. ARGV[3]) ~= ARGV[4] then
  return 0
end
for i = 5, #ARGV do redis.call('XDEL', p .. 'stream:' .. ARGV[3], ARGV[i]) end
return 1`;

/** An entry that can never be ingested: kept in a bounded dead-letter list, removed from the stream.
 *  ARGV: prefix, node, shard, epoch, entryId, record (JSON), maxLen → 1 / 0 (fenced). */
export const DEAD_LETTER = `
local p, node = ARGV[1], ARGV[2]
if redis.call('GET', p .. 'lease:' .. ARGV[3]) ~= node or redis.call('GET', p .. 'epoch:' .. ARGV[3]) ~= ARGV[4] then
  return 0
end
redis.call('LPUSH', p .. 'deadletter', ARGV[6])
redis.call('LTRIM', p .. 'deadletter', 0, tonumber(ARGV[7]) - 1)
redis.call('XDEL', p .. 'stream:' .. ARGV[3], ARGV[5])
return 1`;

/** Durable hand-off with dedupe in one call. ARGV: prefix, shard, dedupeKey, traceId, dedupeTtlMs, message, kind
 *  → {1, entryId} appended / {0, traceId of the first delivery} duplicate. */
export const APPEND = `
local p = ARGV[1]
local dk = p .. 'dedupe:' .. ARGV[3]
if not redis.call('SET', dk, ARGV[4], 'NX', 'PX', tonumber(ARGV[5])) then
  return {0, redis.call('GET', dk)}
end
-- No notice: the owner's reader blocks on XREAD and sees the entry at once.
local id = redis.call('XADD', p .. 'stream:' .. ARGV[2], '*', 'm', ARGV[6], 'k', ARGV[7], 't', ARGV[4])
return {1, id}`;

/** Membership heartbeat. ARGV: prefix, node, ttlMs, info → live node ids.
 *  A Redis without the \`cluster\` marker is new or lost its data (restart without persistence):
 *  the first heartbeat starts a quiet period of one lease, during which no shard is acquired, so
 *  a former holder still inside its validity can only reclaim (RENEW) and never overlaps. */
export const HEARTBEAT = `
local p, node, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
if redis.call('SET', p .. 'cluster', '1', 'NX') then
  redis.call('SET', p .. 'quiet', '1', 'PX', ttl)
end
redis.call('SET', p .. 'node:' .. node, ARGV[4], 'PX', ttl)
redis.call('SADD', p .. 'nodes', node)
local live = {}
for _, n in ipairs(redis.call('SMEMBERS', p .. 'nodes')) do
  if redis.call('EXISTS', p .. 'node:' .. n) == 1 then live[#live + 1] = n else redis.call('SREM', p .. 'nodes', n) end
end
return live`;

/** Configuration change, replicated to every node. ARGV: prefix, node, table, pk, sealed row
 *  (sealed even for a deletion, so a deletion is authenticated too), '1' when deleted, fingerprint of
 *  the cluster secret (cfg:seeded: nodes with another secret are refused at start).
 *  The fingerprint is set only when missing: a cluster seeded under another secret (a node that
 *  raced this one) gets an error (CONFIG_FOREIGN_SECRET), never a change. */
export const CONFIG_FOREIGN_SECRET = 'FOREIGNSECRET';
export const CONFIG_PUT = `
local p = ARGV[1]
local seeded = redis.call('GET', p .. 'cfg:seeded')
if seeded and seeded ~= ARGV[7] then
  return redis.error_reply('${CONFIG_FOREIGN_SECRET} the configuration in Redis belongs to another CLUSTER_SECRET')
end
local id = redis.call('XADD', p .. 'cfg:log', 'MAXLEN', '~', 10000, '*', 'node', ARGV[2], 'tbl', ARGV[3], 'pk', ARGV[4], 'row', ARGV[5])
if ARGV[6] == '1' then redis.call('HDEL', p .. 'cfg:snap:' .. ARGV[3], ARGV[4]) else redis.call('HSET', p .. 'cfg:snap:' .. ARGV[3], ARGV[4], ARGV[5]) end
if not seeded then redis.call('SET', p .. 'cfg:seeded', ARGV[7]) end
redis.call('PUBLISH', p .. 'cfg', id)
return id`;

/** Replay of a dead-lettered stream entry: the record leaves the list and the entry is appended again
 *  to its shard's stream, in one call (two replays of one record cannot both append).
 *  ARGV: prefix, record (exact list value), shard, field1, value1, ... → new entry id / 0 (record gone). */
export const DEAD_LETTER_REPLAY = `
local p = ARGV[1]
if redis.call('LREM', p .. 'deadletter', 1, ARGV[2]) == 0 then return 0 end
return redis.call('XADD', p .. 'stream:' .. ARGV[3], '*', unpack(ARGV, 4))`;

/** Shared token bucket per (class, key); Redis time, so every node refills alike.
 *  ARGV: key, limit, windowMs → {allowed 1/0, remaining tokens (floor), ms until a token / until full}. */
export const RATE_TAKE = `
local key, limit, win = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local perMs = limit / win
local b = redis.call('HMGET', key, 'tk', 'at')
local tokens, at = tonumber(b[1]), tonumber(b[2])
if not tokens then tokens, at = limit, now end
tokens = math.min(limit, tokens + math.max(0, now - at) * perMs)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', key, 'tk', tostring(tokens), 'at', now)
redis.call('PEXPIRE', key, win + 1000)
if allowed == 1 then return {1, math.floor(tokens), math.ceil((limit - tokens) / perMs)} end
return {0, 0, math.ceil((1 - tokens) / perMs)}`;
