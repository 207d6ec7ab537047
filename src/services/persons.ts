// Persons and their platform identities. An identity is one user on one platform (a WhatsApp
// number, a Discord user, a Slack user); a person groups identities (linked by hand, or by the
// platform telling us two ids are the same user, e.g. a WhatsApp phone JID and its LID).
//
// Ids are deterministic so that every node of a cluster (each with its own SQLite) gives one user
// the same ids: an identity's id derives from its platform and canonical key (normalised; for
// WhatsApp the phone number before the LID), and a new identity's person is its home person (an id
// derived from the identity's) unless a move says otherwise. Moves (`person_moves`) record where
// link, unlink and automatic merges sent a person or an identity; in cluster mode link and unlink
// are entries of one shared log (src/cluster/person-log.ts) that every node applies in order, so
// all nodes agree, including a node that first sees a linked identity later (after a failover).
// An automatic merge (a phone JID and its LID seen together) keeps the person a decision put either
// id in, also one this node has not seen: it is recorded on this node only, so it may fold an
// untouched home person (the same on every node) but never a decided one that other nodes keep.
// Rows created before deterministic ids keep their random ids.
// Kept whole: the one owner of persons, identities and moves; linking, merging and the views all
// follow the same moves, so splitting them would spread one invariant over files.
import type { Database } from 'bun:sqlite';
import { Conflict, NotFound } from '../core/errors.ts';
import type { InboundMessage } from '../core/message.ts';
import { normalizeIdentifier } from './access-rules.ts';
import { isoNow, newId, sha256 } from './ids.ts';

/** A channel's platform (channels/registry.ts platformOf): kinds of one platform share their users. */
export type Platform = string;

export interface PersonRow {
  id: string;
  display_name: string | null;
  created_at: string;
  updated_at: string;
}
export interface IdentityRow {
  id: string;
  person_id: string;
  platform: string;
  platform_user_id: string;
  display_name: string | null;
  phone: string | null;
  message_count: number;
  first_seen_at: string;
  last_seen_at: string;
  unlinked_reason: string | null;
  created_at: string;
}

export interface IdentityView {
  id: string;
  personId: string;
  platform: string;
  platformUserId: string;
  aliases: string[];
  displayName: string | null;
  phone: string | null;
  messageCount: number;
  firstSeenAt: string;
  lastSeenAt: string;
  unlinkedReason: string | null;
}
export interface PersonView {
  id: string;
  displayName: string | null;
  identities: IdentityView[];
  createdAt: string;
  updatedAt: string;
}

export interface Presence {
  person: PersonView;
  identities: IdentityView[];
  summary: {
    totalIdentities: number;
    activeChannels: string[];
    totalMessages: number;
    lastSeenAt: string | null;
    firstSeenAt: string | null;
  };
  byChannel: Record<
    string,
    { identities: number; messages: number; firstSeenAt: string; lastSeenAt: string; platformUserIds: string[] }
  >;
}

/** One event of a person on the instances a key may see (PersonService.scoped). */
interface ScopedEventRow {
  identity_id: string;
  received: number;
  created_at: string;
  sender_id: unknown;
  alt_id: unknown;
  name: unknown;
  phone: unknown;
}

/** What one identity did on the instances a key may see. */
interface SeenThere {
  messages: number;
  first: string | null;
  last: string | null;
  anyFirst: string;
  anyLast: string;
  keys: string[];
  name?: { at: string; name: string };
  phone?: { at: string; phone: string };
}

/** Who a message is attributed to. */
export interface Attribution {
  personId: string;
  identityId: string;
}

/** An entry of the cluster's person log: a link or an unlink decided on some node. */
export type PersonOp =
  | { op: 'link'; keeper: string; loser: string; identities: string[] }
  | { op: 'unlink'; identity: string; person: string; reason: string; at: string };

/** A UUID-shaped id (version 8: custom) from a hash, the same on every node. */
function hashId(s: string): string {
  const h = sha256(s);
  const variant = ((parseInt(h[16], 16) & 0x3) | 0x8).toString(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-8${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** True for ids made by hashId (version 8), false for the random ids of rows created before. */
function isDerivedId(id: string): boolean {
  return id.length === 36 && id[14] === '8';
}

/** The key an identity is named by: a WhatsApp phone number before a LID, then the smallest. */
export function canonicalKey(keys: string[]): string {
  const norm = keys.map(normalizeIdentifier);
  return norm.sort(
    (a, b) => Number(a.endsWith('@lid')) - Number(b.endsWith('@lid')) || (a < b ? -1 : a > b ? 1 : 0),
  )[0];
}

/** The identity id of a platform user, from its canonical key. */
export function identityIdOf(platform: string, keys: string[]): string {
  return hashId(`identity\0${platform}\0${canonicalKey(keys)}`);
}

/** The person a new identity belongs to when nothing moved it. */
export function homePersonOf(identityId: string): string {
  return hashId(`person\0${identityId}`);
}

/** Presence (identities, channels, counts, first/last seen) of a person view. */
export function presenceOf(person: PersonView): Presence {
  const byChannel: Presence['byChannel'] = {};
  for (const i of person.identities) {
    const c = (byChannel[i.platform] ??= {
      identities: 0,
      messages: 0,
      firstSeenAt: i.firstSeenAt,
      lastSeenAt: i.lastSeenAt,
      platformUserIds: [],
    });
    c.identities++;
    c.messages += i.messageCount;
    if (i.firstSeenAt < c.firstSeenAt) c.firstSeenAt = i.firstSeenAt;
    if (i.lastSeenAt > c.lastSeenAt) c.lastSeenAt = i.lastSeenAt;
    c.platformUserIds.push(i.platformUserId, ...i.aliases);
  }
  const firsts = person.identities.map((i) => i.firstSeenAt).sort();
  const lasts = person.identities.map((i) => i.lastSeenAt).sort();
  return {
    person,
    identities: person.identities,
    summary: {
      totalIdentities: person.identities.length,
      activeChannels: Object.keys(byChannel).sort(),
      totalMessages: person.identities.reduce((n, i) => n + i.messageCount, 0),
      firstSeenAt: firsts[0] ?? null,
      lastSeenAt: lasts.at(-1) ?? null,
    },
    byChannel,
  };
}

export class PersonService {
  private stmt;

  constructor(private db: Database) {
    this.stmt = {
      known: db.query<{ identity_id: string; person_id: string; person_name: string | null }, [string, string]>(
        `SELECT k.identity_id, i.person_id, p.display_name AS person_name FROM identity_keys k
         JOIN identities i ON i.id = k.identity_id JOIN persons p ON p.id = i.person_id WHERE k.platform = ? AND k.key = ?`,
      ),
      count: db.query(
        `UPDATE identities SET message_count = message_count + ?, last_seen_at = MAX(last_seen_at, ?), first_seen_at = MIN(first_seen_at, ?),
         display_name = COALESCE(?, display_name), phone = COALESCE(?, phone) WHERE id = ?`,
      ),
    };
  }

  /**
   * Finds or creates the identity (and person) of a message sender and counts the message.
   * `sender.altId` names another id of the same user (WhatsApp LID ↔ phone JID): both ids map to
   * one identity; two identities found that way are merged. Call inside a transaction.
   */
  observe(platform: Platform, sender: InboundMessage['sender'], at: string, countMessage = true): Attribution {
    // Common case: a known sender whose ids all map to one identity — one read and one update.
    const known = this.stmt.known.get(platform, sender.id);
    if (
      known &&
      (!sender.altId ||
        sender.altId === sender.id ||
        this.identityIdByKey(platform, sender.altId) === known.identity_id)
    ) {
      this.stmt.count.run(countMessage ? 1 : 0, at, at, sender.name ?? null, sender.phone ?? null, known.identity_id);
      if (sender.name && known.person_name === null)
        this.db
          .query('UPDATE persons SET display_name = COALESCE(display_name, ?) WHERE id = ?')
          .run(sender.name, known.person_id);
      return { personId: known.person_id, identityId: known.identity_id };
    }
    const keys = [...new Set([sender.id, sender.altId].filter((k): k is string => !!k))];
    const own = identityIdOf(platform, keys);
    const found = [...new Set(keys.map((k) => this.identityIdByKey(platform, k)).filter((x): x is string => !!x))];
    // The same user under another spelling of the key (e.g. a device suffix) is the same identity.
    if (!found.includes(own) && this.identity(own)) found.push(own);
    // Every node that sees these ids together ends with one identity, the canonical key's (created
    // here when this node knew the user by another key only, e.g. the LID); an identity created
    // before ids were derived keeps its id.
    const identityId = found.includes(own) ? own : (found.find((f) => !isDerivedId(f)) ?? own);
    // The user's person: the first one a decision put any of its identities in — also an identity
    // of one key this node has not seen (a LID linked elsewhere) — else the kept identity's. A
    // merely home person is folded into it; a decided one is kept, as every node keeps it.
    const placements = [...new Set([identityId, ...found, ...keys.map((k) => identityIdOf(platform, [k]))])].map((id) =>
      this.placement(id),
    );
    const personId = (placements.find((p) => p.decided) ?? placements[0]).person;
    const kept = this.identity(identityId);
    if (!kept) {
      this.db
        .query('INSERT OR IGNORE INTO persons (id, display_name, created_at, updated_at) VALUES (?, ?, ?, ?)')
        .run(personId, sender.name ?? null, at, at);
      this.db
        .query(
          'INSERT INTO identities (id, person_id, platform, platform_user_id, display_name, phone, message_count, first_seen_at, last_seen_at, created_at) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?)',
        )
        .run(identityId, personId, platform, sender.id, sender.name ?? null, sender.phone ?? null, at, at, at);
    } else if (kept.person_id !== personId) this.absorbPerson(personId, kept.person_id);
    for (const other of found) if (other !== identityId) this.mergeIdentities(identityId, other);
    for (const k of keys)
      this.db
        .query('INSERT OR IGNORE INTO identity_keys (platform, key, identity_id) VALUES (?, ?, ?)')
        .run(platform, k, identityId);
    this.stmt.count.run(countMessage ? 1 : 0, at, at, sender.name ?? null, sender.phone ?? null, identityId);
    // The merges folded every other person into `personId`.
    if (sender.name)
      this.db
        .query('UPDATE persons SET display_name = COALESCE(display_name, ?) WHERE id = ?')
        .run(sender.name, personId);
    return { personId, identityId };
  }

  /** The identity an id belongs to on a platform, without creating anything. */
  lookup(platform: Platform, key: string): Attribution | null {
    const r = this.db
      .query<{ identity_id: string; person_id: string }, [string, string]>(
        'SELECT k.identity_id, i.person_id FROM identity_keys k JOIN identities i ON i.id = k.identity_id WHERE k.platform = ? AND k.key = ?',
      )
      .get(platform, key);
    return r ? { identityId: r.identity_id, personId: r.person_id } : null;
  }

  private identityIdByKey(platform: string, key: string): string | null {
    return (
      this.db
        .query<{ identity_id: string }, [string, string]>(
          'SELECT identity_id FROM identity_keys WHERE platform = ? AND key = ?',
        )
        .get(platform, key)?.identity_id ?? null
    );
  }

  /** Where a person was merged to (following moves), or the person itself. */
  resolve(personId: string): string {
    let p = personId;
    for (let hop = 0; hop < 32; hop++) {
      const next = this.db
        .query<{ to_person: string }, [string]>(
          "SELECT to_person FROM person_moves WHERE kind = 'person' AND from_id = ?",
        )
        .get(p)?.to_person;
      if (!next || next === p) break;
      p = next;
    }
    return p;
  }

  /** The person of an identity this node has not seen before: where it was moved, else its home person. */
  private personForNewIdentity(identityId: string): string {
    const moved = this.db
      .query<{ to_person: string }, [string]>(
        "SELECT to_person FROM person_moves WHERE kind = 'identity' AND from_id = ?",
      )
      .get(identityId)?.to_person;
    return this.resolve(moved ?? homePersonOf(identityId));
  }

  /**
   * Where an identity is (its row here, else where moves put it when first seen) and whether a
   * decision (link, unlink, an earlier merge) put it there rather than in its untouched home person.
   */
  private placement(identityId: string): { person: string; decided: boolean } {
    const person = this.identity(identityId)?.person_id ?? this.personForNewIdentity(identityId);
    const decided =
      person !== homePersonOf(identityId) ||
      this.db.query('SELECT 1 FROM person_moves WHERE to_person = ? LIMIT 1').get(person) !== null;
    return { person, decided };
  }

  /** Folds identity `loser` into `keeper` (they are the same platform user). */
  private mergeIdentities(keeper: string, loser: string): void {
    const k = this.identity(keeper)!;
    const l = this.identity(loser)!;
    this.db.query('UPDATE identity_keys SET identity_id = ? WHERE identity_id = ?').run(keeper, loser);
    this.db
      .query(
        'UPDATE identities SET message_count = message_count + ?, first_seen_at = MIN(first_seen_at, ?), last_seen_at = MAX(last_seen_at, ?), phone = COALESCE(phone, ?) WHERE id = ?',
      )
      .run(l.message_count, l.first_seen_at, l.last_seen_at, l.phone, keeper);
    // An event's person is always its identity's person: the person filter lets events_person serve this.
    this.db
      .query('UPDATE events SET identity_id = ?, person_id = ? WHERE person_id = ? AND identity_id = ?')
      .run(keeper, k.person_id, l.person_id, loser);
    this.db.query('DELETE FROM identities WHERE id = ?').run(loser);
    if (l.person_id !== k.person_id) this.absorbPerson(k.person_id, l.person_id);
  }

  /**
   * Moves everything of person `loser` to `keeper` and deletes `loser`; records the move, so that
   * identities whose home was `loser` (or anything moved to it) land in `keeper` when first seen.
   */
  private absorbPerson(keeper: string, loser: string): void {
    this.db
      .query(
        "INSERT INTO person_moves (kind, from_id, to_person) VALUES ('person', ?, ?) ON CONFLICT DO UPDATE SET to_person = excluded.to_person",
      )
      .run(loser, keeper);
    this.db.query('UPDATE person_moves SET to_person = ? WHERE to_person = ?').run(keeper, loser);
    const l = this.db.query<PersonRow, [string]>('SELECT * FROM persons WHERE id = ?').get(loser);
    if (!l) return; // nothing of it on this node
    const now = isoNow();
    this.db
      .query('INSERT OR IGNORE INTO persons (id, display_name, created_at, updated_at) VALUES (?, ?, ?, ?)')
      .run(keeper, l.display_name, l.created_at, now);
    this.db.query('UPDATE identities SET person_id = ? WHERE person_id = ?').run(keeper, loser);
    this.db.query('UPDATE events SET person_id = ? WHERE person_id = ?').run(keeper, loser);
    this.db
      .query('UPDATE persons SET display_name = COALESCE(display_name, ?), updated_at = ? WHERE id = ?')
      .run(l.display_name, now, keeper);
    this.db.query('DELETE FROM persons WHERE id = ?').run(loser);
  }

  /** Merges the person of `loser` into the person of `keeper` (both followed through moves). */
  private linkPersons(keeper: string, loser: string, identityIds: string[]): void {
    const k = this.resolve(keeper);
    const l = this.resolve(loser);
    if (k !== l) this.absorbPerson(k, l);
    this.db
      .query(`UPDATE identities SET unlinked_reason = NULL WHERE id IN (${identityIds.map(() => '?').join(',')})`)
      .run(...identityIds);
  }

  /** Moves one identity (and its events) to `person`, created when missing; records the move. */
  private moveIdentity(identityId: string, person: string, reason: string, at: string): void {
    this.db
      .query(
        "INSERT INTO person_moves (kind, from_id, to_person) VALUES ('identity', ?, ?) ON CONFLICT DO UPDATE SET to_person = excluded.to_person",
      )
      .run(identityId, person);
    const i = this.identity(identityId);
    if (!i) return; // nothing of it on this node
    const target = this.resolve(person);
    this.db
      .query('INSERT OR IGNORE INTO persons (id, display_name, created_at, updated_at) VALUES (?, ?, ?, ?)')
      .run(target, i.display_name, at, at);
    this.db.query('UPDATE identities SET person_id = ?, unlinked_reason = ? WHERE id = ?').run(target, reason, i.id);
    if (i.person_id === target) return;
    this.db
      .query('UPDATE events SET person_id = ? WHERE person_id = ? AND identity_id = ?')
      .run(target, i.person_id, i.id);
    this.db.query('UPDATE persons SET updated_at = ? WHERE id = ?').run(at, i.person_id);
    // In a cluster the old person may keep identities on other nodes only: no empty row here.
    if (!this.db.query('SELECT 1 FROM identities WHERE person_id = ? LIMIT 1').get(i.person_id))
      this.db.query('DELETE FROM persons WHERE id = ?').run(i.person_id);
  }

  /** Applies one link or unlink (decided here, or read from the cluster's person log). */
  private apply(op: PersonOp): void {
    if (op.op === 'link') this.linkPersons(op.keeper, op.loser, op.identities);
    else this.moveIdentity(op.identity, op.person, op.reason, op.at);
  }

  /** How many entries of the cluster's person log `log` this node has applied. */
  logApplied(log: string): number {
    return (
      this.db.query<{ applied: number }, [string]>('SELECT applied FROM person_log WHERE name = ?').get(log)?.applied ??
      0
    );
  }

  /** Applies log entries from index `from` (all or nothing); `from` must be the count applied so far. */
  applyLog(log: string, from: number, ops: PersonOp[]): void {
    this.db
      .transaction(() => {
        if (this.logApplied(log) !== from) return; // another pull got there first
        for (const op of ops) this.apply(op);
        this.db
          .query(
            'INSERT INTO person_log (name, applied) VALUES (?, ?) ON CONFLICT DO UPDATE SET applied = excluded.applied',
          )
          .run(log, from + ops.length);
      })
      .immediate();
  }

  /** The log restarted (Redis lost it): what was applied stays; counting starts again at `applied`. */
  resetLog(log: string, applied: number): void {
    this.db
      .query(
        'INSERT INTO person_log (name, applied) VALUES (?, ?) ON CONFLICT DO UPDATE SET applied = excluded.applied',
      )
      .run(log, applied);
  }

  identity(id: string): IdentityRow | null {
    return this.db.query<IdentityRow, [string]>('SELECT * FROM identities WHERE id = ?').get(id);
  }

  private identityView(r: IdentityRow): IdentityView {
    const aliases = this.db
      .query<{ key: string }, [string, string]>(
        'SELECT key FROM identity_keys WHERE identity_id = ? AND key <> ? ORDER BY key',
      )
      .all(r.id, r.platform_user_id)
      .map((a) => a.key);
    return {
      id: r.id,
      personId: r.person_id,
      platform: r.platform,
      platformUserId: r.platform_user_id,
      aliases,
      displayName: r.display_name,
      phone: r.phone,
      messageCount: r.message_count,
      firstSeenAt: r.first_seen_at,
      lastSeenAt: r.last_seen_at,
      unlinkedReason: r.unlinked_reason,
    };
  }

  identitiesOf(personId: string): IdentityView[] {
    return this.db
      .query<IdentityRow, [string]>('SELECT * FROM identities WHERE person_id = ? ORDER BY first_seen_at, id')
      .all(personId)
      .map((r) => this.identityView(r));
  }

  private view(p: PersonRow): PersonView {
    return {
      id: p.id,
      displayName: p.display_name,
      identities: this.identitiesOf(p.id),
      createdAt: p.created_at,
      updatedAt: p.updated_at,
    };
  }

  get(id: string): PersonView | null {
    const p = this.db.query<PersonRow, [string]>('SELECT * FROM persons WHERE id = ?').get(id);
    return p ? this.view(p) : null;
  }

  /** Persons whose name, platform id/alias or phone contains `search` (case-insensitive), of `ids`, or holding `identityIds`; by id. */
  search(opts: {
    search?: string;
    ids?: string[];
    identityIds?: string[];
    afterId?: string;
    limit: number;
    instanceIds?: string[] | null;
  }): PersonView[] {
    const w: string[] = [];
    const params: (string | number)[] = [];
    const marks = (n: number) => Array.from({ length: n }, () => '?').join(',');
    if (opts.ids) {
      w.push(`p.id IN (${marks(opts.ids.length)})`);
      params.push(...opts.ids);
    }
    if (opts.instanceIds) {
      // Instance-bound keys see only persons who wrote to (or were written from) their instances.
      if (opts.instanceIds.length === 0) return [];
      w.push(`p.id IN (SELECT person_id FROM events WHERE instance_id IN (${marks(opts.instanceIds.length)}))`);
      params.push(...opts.instanceIds);
    }
    if (opts.identityIds) {
      // Such a key finds a person by the identities it may see only (those of `scoped`).
      const seen = opts.instanceIds
        ? ` AND id IN (SELECT identity_id FROM events WHERE instance_id IN (${marks(opts.instanceIds.length)}))`
        : '';
      w.push(`p.id IN (SELECT person_id FROM identities WHERE id IN (${marks(opts.identityIds.length)})${seen})`);
      params.push(...opts.identityIds, ...(opts.instanceIds ?? []));
    }
    if (opts.search && opts.instanceIds) {
      // Such a key matches what its view shows: names, phones and ids from its instances' messages.
      const like = `%${opts.search.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
      const field = (f: string) => `json_extract(payload_json, '$.sender.${f}') LIKE ? ESCAPE '\\'`;
      w.push(`p.id IN (SELECT person_id FROM events WHERE type = 'message.received'
        AND instance_id IN (${marks(opts.instanceIds.length)})
        AND (${['name', 'phone', 'id', 'altId'].map(field).join(' OR ')}))`);
      params.push(...opts.instanceIds, like, like, like, like);
    } else if (opts.search) {
      const like = `%${opts.search.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
      w.push(`(p.display_name LIKE ? ESCAPE '\\' OR p.id IN (
        SELECT i.person_id FROM identities i WHERE i.display_name LIKE ? ESCAPE '\\' OR i.phone LIKE ? ESCAPE '\\'
        UNION SELECT i.person_id FROM identity_keys k JOIN identities i ON i.id = k.identity_id WHERE k.key LIKE ? ESCAPE '\\'))`);
      params.push(like, like, like, like);
    }
    if (opts.afterId) {
      w.push('p.id > ?');
      params.push(opts.afterId);
    }
    return this.db
      .query<PersonRow, (string | number)[]>(
        `SELECT p.* FROM persons p ${w.length ? `WHERE ${w.join(' AND ')}` : ''} ORDER BY p.id LIMIT ?`,
      )
      .all(...params, opts.limit)
      .map((p) => this.view(p));
  }

  /** True when an instance-bound key may see this person (unrestricted keys see everyone). */
  visibleTo(personId: string, instanceIds: string[] | null): boolean {
    if (instanceIds === null) return true;
    if (instanceIds.length === 0) return false;
    return (
      this.db
        .query(
          `SELECT 1 FROM events WHERE person_id = ? AND instance_id IN (${instanceIds.map(() => '?').join(',')}) LIMIT 1`,
        )
        .get(personId, ...instanceIds) !== null
    );
  }

  /**
   * The person as a key restricted to instances may see it, computed from those instances' events
   * only: the identities that wrote to (or were written from) them, each with the name, phone and
   * ids it used there, its message count and first/last seen there; the person's name is the first
   * one given there and it exists from the first event there on. The stored rows add up every
   * instance's traffic, which would show other tenants' (issue 26). Events past retention no
   * longer count. Unrestricted keys see the stored view.
   */
  scoped(person: PersonView, instanceIds: string[] | null): PersonView {
    if (instanceIds === null) return person;
    if (instanceIds.length === 0) return { ...person, identities: [] };
    const rows = this.db
      .query<ScopedEventRow, string[]>(
        `SELECT identity_id, type = 'message.received' AS received, created_at,
           json_extract(payload_json, '$.sender.id') AS sender_id, json_extract(payload_json, '$.sender.altId') AS alt_id,
           json_extract(payload_json, '$.sender.name') AS name, json_extract(payload_json, '$.sender.phone') AS phone
         FROM events WHERE person_id = ? AND identity_id IS NOT NULL
           AND instance_id IN (${instanceIds.map(() => '?').join(',')}) ORDER BY seq`,
      )
      .all(person.id, ...instanceIds);
    const seen = new Map<string, SeenThere>();
    let firstEvent: string | null = null;
    let firstName: { at: string; name: string } | null = null;
    for (const r of rows) {
      if (firstEvent === null || r.created_at < firstEvent) firstEvent = r.created_at;
      let s = seen.get(r.identity_id);
      if (!s) {
        s = { messages: 0, first: null, last: null, anyFirst: r.created_at, anyLast: r.created_at, keys: [] };
        seen.set(r.identity_id, s);
      }
      if (r.created_at < s.anyFirst) s.anyFirst = r.created_at;
      if (r.created_at > s.anyLast) s.anyLast = r.created_at;
      if (!r.received) continue; // a reply or an API send: the identity is shown, nothing of it counted
      s.messages++;
      if (s.first === null || r.created_at < s.first) s.first = r.created_at;
      if (s.last === null || r.created_at > s.last) s.last = r.created_at;
      for (const k of [r.sender_id, r.alt_id]) if (typeof k === 'string' && !s.keys.includes(k)) s.keys.push(k);
      if (typeof r.name === 'string' && (!s.name || r.created_at >= s.name.at))
        s.name = { at: r.created_at, name: r.name };
      if (typeof r.phone === 'string' && (!s.phone || r.created_at >= s.phone.at))
        s.phone = { at: r.created_at, phone: r.phone };
      if (typeof r.name === 'string' && (!firstName || r.created_at < firstName.at))
        firstName = { at: r.created_at, name: r.name };
    }
    const identities = person.identities
      .filter((i) => seen.has(i.id))
      .map((i): IdentityView => {
        const s = seen.get(i.id)!;
        // The ids the user wrote from there: an alias learnt from another instance's traffic stays hidden.
        const known = new Set([i.platformUserId, ...i.aliases]);
        const used = s.keys.filter((k) => known.has(k));
        const platformUserId = used.length === 0 || used.includes(i.platformUserId) ? i.platformUserId : used[0];
        return {
          ...i,
          platformUserId,
          aliases: used.filter((k) => k !== platformUserId).sort(),
          displayName: s.name?.name ?? null,
          phone: s.phone?.phone ?? null,
          messageCount: s.messages,
          firstSeenAt: s.first ?? s.anyFirst,
          lastSeenAt: s.last ?? s.anyLast,
        };
      })
      .sort((x, y) =>
        x.firstSeenAt !== y.firstSeenAt ? (x.firstSeenAt < y.firstSeenAt ? -1 : 1) : x.id < y.id ? -1 : 1,
      );
    // Never before the row itself (a person made by an unlink starts then), nor before its first event there.
    const createdAt = firstEvent && firstEvent > person.createdAt ? firstEvent : person.createdAt;
    return {
      ...person,
      displayName: firstName?.name ?? null,
      identities,
      createdAt,
      updatedAt: [person.updatedAt, createdAt].sort()[1],
    };
  }

  /** Links two identities: their persons become one (the person of A is kept). */
  link(identityA: string, identityB: string): PersonView {
    return this.db
      .transaction(() => {
        const a = this.identity(identityA);
        const b = this.identity(identityB);
        if (!a) throw new NotFound(`Identity '${identityA}' not found`, { field: 'identityA' });
        if (!b) throw new NotFound(`Identity '${identityB}' not found`, { field: 'identityB' });
        this.apply({ op: 'link', keeper: a.person_id, loser: b.person_id, identities: [a.id, b.id] });
        return this.get(a.person_id)!;
      })
      .immediate();
  }

  /** Detaches an identity into a person of its own; its events follow it. */
  unlink(identityId: string, reason: string): { person: PersonView; identity: IdentityView } {
    return this.db
      .transaction(() => {
        const i = this.identity(identityId);
        if (!i) throw new NotFound(`Identity '${identityId}' not found`, { field: 'identityId' });
        const siblings = this.db
          .query<{ n: number }, [string]>('SELECT COUNT(*) AS n FROM identities WHERE person_id = ?')
          .get(i.person_id)!.n;
        if (siblings <= 1)
          throw new Conflict('The identity is the only one of its person; nothing to unlink', {
            identityId,
          });
        const personId = newId();
        this.apply({ op: 'unlink', identity: i.id, person: personId, reason, at: isoNow() });
        return { person: this.get(personId)!, identity: this.identityView(this.identity(i.id)!) };
      })
      .immediate();
  }
}
