// Cluster person log, in process on the local redis-server: a log Redis lost and that grew again
// past what this node had applied is read from its start (the log's generation id changed); an
// entry that is not a link or unlink is skipped, counted and logged, and the entries after it apply.
import { afterAll, describe, expect, test } from 'bun:test';
import Redis from 'ioredis';
import { PersonLog } from '../../src/cluster/persons/person-log.ts';
import { createLogger } from '../../src/log.ts';
import { isoNow } from '../../src/services/ids.ts';
import type { PersonOp } from '../../src/services/persons.ts';
import { createTestGateway } from '../helpers.ts';
import { dropKeys, REDIS_URL } from './nodes.ts';

const prefixes: string[] = [];
const closers: Array<() => unknown> = [];
afterAll(async () => {
  for (const c of closers) await c();
  for (const p of prefixes) await dropKeys(p);
});

/** One node's persons service and its reader of a fresh log; `who` records a Discord sender. */
function setup() {
  const prefix = `sbtest:${Math.random().toString(36).slice(2, 10)}:`;
  prefixes.push(prefix);
  const logs: string[] = [];
  const log = createLogger('info', { destination: { write: (line: string) => void logs.push(line) } });
  const t = createTestGateway();
  const persons = t.gw.persons;
  const redis = new Redis(REDIS_URL);
  const personLog = new PersonLog({ redis, prefix, persons, log });
  closers.push(
    () => personLog.stop(),
    () => redis.disconnect(),
    () => t.close(),
  );
  const who = (name: string) => persons.observe('discord', { id: name, name }, isoNow());
  const link = (keeper: ReturnType<typeof who>, loser: ReturnType<typeof who>): PersonOp => ({
    op: 'link',
    keeper: keeper.personId,
    loser: loser.personId,
    identities: [keeper.identityId, loser.identityId],
  });
  /** The identities of a person as the API shows them. */
  const members = async (personId: string) =>
    ((await t.call('GET', `/api/v2/persons/${personId}`)).body.data?.identities ?? [])
      .map((i: { id: string }) => i.id)
      .sort();
  return { prefix, logs, persons, personLog, who, link, members };
}

describe('cluster person log', () => {
  test('after Redis lost the log, a new log longer than what this node applied is read from its start', async () => {
    const { prefix, personLog, who, link, members } = setup();
    const [x, y, z, w] = ['x', 'y', 'z', 'w'].map(who);
    await personLog.append(link(x, y));
    await personLog.sync();
    expect(await members(x.personId)).toEqual([x.identityId, y.identityId].sort());

    await dropKeys(prefix); // Redis restarted without its data
    // Other nodes decide two links before this node looks again: the new log (2) is longer than what it applied (1).
    await personLog.append(link(x, z));
    await personLog.append(link(x, w));
    await personLog.sync();
    expect(await members(x.personId)).toEqual([x.identityId, y.identityId, z.identityId, w.identityId].sort());
  });

  test('an entry that is not a link or unlink is skipped, counted and logged without its content; later entries apply', async () => {
    const { prefix, logs, personLog, who, link, members } = setup();
    const [x, y, z] = ['x', 'y', 'z'].map(who);
    const bad = [
      'not json {',
      // Unknown op with an unlink's fields: never applied as an unlink.
      JSON.stringify({ op: 'merge', identity: y.identityId, person: 'elsewhere-person', reason: 'x', at: isoNow() }),
      JSON.stringify({ op: 'link', keeper: x.personId, loser: y.personId }),
    ];
    const redis = new (await import('ioredis')).default(REDIS_URL);
    await redis.rpush(`${prefix}persons:log`, ...bad);
    redis.disconnect();
    await personLog.append(link(x, z));
    await personLog.sync();
    expect(await members(x.personId)).toEqual([x.identityId, z.identityId].sort());
    expect(await members(y.personId)).toEqual([y.identityId]);
    expect(personLog.counters.skipped).toBe(3);
    const warned = logs.filter((l) => l.includes('not a link or unlink'));
    expect(warned.map((l) => JSON.parse(l).index)).toEqual([0, 1, 2]);
    expect(warned.join('\n')).not.toContain('elsewhere-person');
    // Applied once: a later sync neither re-applies nor skips again.
    await personLog.sync();
    expect(personLog.counters.skipped).toBe(3);
  });
});
