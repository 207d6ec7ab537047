// Auth state in SQLite, round-tripped with Baileys' own initAuthCreds and BufferJSON.

import type { Database } from 'bun:sqlite';
import { afterEach, beforeEach, describe, expect, test } from 'bun:test';
import { Curve, initAuthCreds, proto } from '@whiskeysockets/baileys';
import { openDatabase } from '../../../db/open.ts';
import { AuthStateCorruptError, hasStoredAuth, useSqliteAuthState } from '../../../src/channels/whatsapp/auth-state.ts';

let db: Database;

function insertInstance(db: Database, id: string, name = id): void {
  const now = new Date().toISOString();
  const seq = db.query<{ n: number }, []>('SELECT COALESCE(MAX(seq), 0) + 1 AS n FROM instances').get()!.n;
  db.query(
    `INSERT INTO instances (id, seq, name, channel, webhook_secret, created_at, updated_at)
     VALUES (?, ?, ?, 'whatsapp-baileys', 'secret', ?, ?)`,
  ).run(id, seq, name, now, now);
}

beforeEach(() => {
  db = openDatabase(':memory:');
  insertInstance(db, 'inst-a');
  insertInstance(db, 'inst-b');
});
afterEach(() => db.close());

describe('useSqliteAuthState', () => {
  test('fresh instance gets Baileys creds; saved creds come back with their Buffers intact', () => {
    const first = useSqliteAuthState(db, 'inst-a');
    expect(hasStoredAuth(db, 'inst-a')).toBe(false);
    const creds = first.state.creds;
    expect(creds.noiseKey.private).toBeInstanceOf(Uint8Array);
    creds.me = { id: '5511999990000:7@s.whatsapp.net', name: 'Bot' };
    creds.registered = true;
    creds.routingInfo = Buffer.from([1, 2, 3, 250]);
    first.saveCreds();
    expect(hasStoredAuth(db, 'inst-a')).toBe(true);

    const again = useSqliteAuthState(db, 'inst-a').state.creds;
    expect(Buffer.isBuffer(again.noiseKey.private)).toBe(true);
    expect(Buffer.from(again.noiseKey.private).equals(Buffer.from(creds.noiseKey.private))).toBe(true);
    expect(Buffer.from(again.signedIdentityKey.public).equals(Buffer.from(creds.signedIdentityKey.public))).toBe(true);
    expect(Buffer.from(again.signedPreKey.signature).equals(Buffer.from(creds.signedPreKey.signature))).toBe(true);
    expect(again.registrationId).toBe(creds.registrationId);
    expect(again.advSecretKey).toBe(creds.advSecretKey);
    expect(again.me?.id).toBe('5511999990000:7@s.whatsapp.net');
    expect(again.registered).toBe(true);
    expect(Array.from(again.routingInfo!)).toEqual([1, 2, 3, 250]);
    // Another instance is untouched.
    const other = useSqliteAuthState(db, 'inst-b').state.creds;
    expect(Buffer.from(other.noiseKey.private).equals(Buffer.from(creds.noiseKey.private))).toBe(false);
    expect(hasStoredAuth(db, 'inst-b')).toBe(false);
  });

  test('keys set/get/delete, app-state keys as protobuf objects, one transaction per set', async () => {
    const { state } = useSqliteAuthState(db, 'inst-a');
    const preKey = Curve.generateKeyPair();
    const session = new Uint8Array([9, 8, 7, 6]);
    await state.keys.set({
      'pre-key': { '1': preKey, '2': Curve.generateKeyPair() },
      session: { '5511999990001.0': session },
      'app-state-sync-key': { AAAA: { keyData: Buffer.from('secret-key'), timestamp: 123 } as any },
      'lid-mapping': { '100000000000001': '5511999990001' },
    });
    const got = await state.keys.get('pre-key', ['1', '2', '3']);
    expect(Object.keys(got).sort()).toEqual(['1', '2']);
    expect(Buffer.from(got['1'].private).equals(Buffer.from(preKey.private))).toBe(true);
    expect(Buffer.from(got['1'].public).equals(Buffer.from(preKey.public))).toBe(true);
    const sessions = await state.keys.get('session', ['5511999990001.0']);
    expect(Array.from(sessions['5511999990001.0'])).toEqual([9, 8, 7, 6]);
    const appKeys = await state.keys.get('app-state-sync-key', ['AAAA']);
    expect(appKeys.AAAA).toBeInstanceOf(proto.Message.AppStateSyncKeyData);
    expect(Buffer.from(appKeys.AAAA.keyData!).toString()).toBe('secret-key');
    expect((await state.keys.get('lid-mapping', ['100000000000001']))['100000000000001']).toBe('5511999990001');

    // null deletes
    await state.keys.set({ 'pre-key': { '1': null } });
    expect(Object.keys(await state.keys.get('pre-key', ['1', '2']))).toEqual(['2']);

    // a set() that fails half-way leaves nothing behind
    const bad = {
      toJSON() {
        throw new Error('boom');
      },
    };
    expect(() => state.keys.set({ 'pre-key': { '10': Curve.generateKeyPair(), '11': bad as any } })).toThrow('boom');
    expect(Object.keys(await state.keys.get('pre-key', ['10', '11']))).toEqual([]);
  });

  test('clear() removes creds and keys of that instance only; deleting the instance cascades', async () => {
    const a = useSqliteAuthState(db, 'inst-a');
    a.saveCreds();
    await a.state.keys.set({ session: { s1: new Uint8Array([1]) } });
    const b = useSqliteAuthState(db, 'inst-b');
    b.saveCreds();
    await b.state.keys.set({ session: { s1: new Uint8Array([2]) } });

    a.clear();
    expect(hasStoredAuth(db, 'inst-a')).toBe(false);
    expect(await useSqliteAuthState(db, 'inst-a').state.keys.get('session', ['s1'])).toEqual({});
    expect(Array.from((await b.state.keys.get('session', ['s1'])).s1)).toEqual([2]);

    db.query('DELETE FROM instances WHERE id = ?').run('inst-b');
    const left = db
      .query<{ n: number }, [string]>('SELECT COUNT(*) AS n FROM whatsapp_auth WHERE instance_id = ?')
      .get('inst-b')!.n;
    expect(left).toBe(0);
  });

  test('a corrupted creds row or key row throws AuthStateCorruptError', async () => {
    useSqliteAuthState(db, 'inst-a').saveCreds();
    db.query(
      `UPDATE whatsapp_auth SET value = '{"noiseKey": {"priv' WHERE instance_id = 'inst-a' AND kind = 'creds'`,
    ).run();
    expect(() => useSqliteAuthState(db, 'inst-a')).toThrow(AuthStateCorruptError);

    // valid JSON that is not creds is corrupt too
    db.query(`UPDATE whatsapp_auth SET value = '{"hello": 1}' WHERE instance_id = 'inst-a' AND kind = 'creds'`).run();
    expect(() => useSqliteAuthState(db, 'inst-a')).toThrow(/corrupt/);

    const b = useSqliteAuthState(db, 'inst-b');
    db.query(
      `INSERT INTO whatsapp_auth (instance_id, kind, key_id, value) VALUES ('inst-b', 'session', 'x', 'not json')`,
    ).run();
    let caught: unknown;
    try {
      await b.state.keys.get('session', ['x']);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(AuthStateCorruptError);
    expect((caught as AuthStateCorruptError).kind).toBe('session');
  });

  test('initAuthCreds values survive exactly (every byte field)', () => {
    const original = initAuthCreds();
    const s = useSqliteAuthState(db, 'inst-a');
    Object.assign(s.state.creds, original);
    s.saveCreds();
    const back = useSqliteAuthState(db, 'inst-a').state.creds;
    const bytes = (c: typeof original) =>
      [
        c.noiseKey.private,
        c.noiseKey.public,
        c.pairingEphemeralKeyPair.private,
        c.signedIdentityKey.private,
        c.signedPreKey.keyPair.public,
      ].map((b) => Buffer.from(b).toString('hex'));
    expect(bytes(back)).toEqual(bytes(original));
    expect(back.signedPreKey.keyId).toBe(original.signedPreKey.keyId);
  });
});
