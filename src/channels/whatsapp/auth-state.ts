// Baileys auth state (creds + signal keys) in bun:sqlite, one row per (instance, kind, key id),
// serialized with Baileys' BufferJSON so Buffers/Uint8Arrays survive the round trip.
// Never the multi-file helper: Baileys itself says it is for demos, and we want one database.
import type { Database } from 'bun:sqlite';
import type {
  AuthenticationCreds,
  AuthenticationState,
  SignalDataSet,
  SignalDataTypeMap,
} from '@whiskeysockets/baileys';
import { BufferJSON, initAuthCreds, proto } from '@whiskeysockets/baileys';

const CREDS_KIND = 'creds';
const CREDS_KEY_ID = '';

/** A stored auth row cannot be decoded; the instance must be re-linked. */
export class AuthStateCorruptError extends Error {
  constructor(
    readonly instanceId: string,
    readonly kind: string,
    readonly keyId: string,
    cause?: unknown,
  ) {
    super(
      `WhatsApp auth state of instance ${instanceId} is corrupt (${kind}${keyId ? ` ${keyId}` : ''}); re-link the device`,
    );
    this.name = 'AuthStateCorruptError';
    if (cause !== undefined) (this as { cause?: unknown }).cause = cause;
  }
}

export interface SqliteAuthState {
  state: AuthenticationState;
  saveCreds(): void;
  /** Removes every creds/key row of the instance (logout, re-link). */
  clear(): void;
}

function isBytes(v: unknown): boolean {
  return v instanceof Uint8Array; // Buffer is a Uint8Array
}

function looksLikeCreds(v: unknown): v is AuthenticationCreds {
  if (!v || typeof v !== 'object') return false;
  const c = v as Partial<AuthenticationCreds>;
  return (
    isBytes(c.noiseKey?.private) &&
    isBytes(c.noiseKey?.public) &&
    isBytes(c.signedIdentityKey?.private) &&
    isBytes(c.signedIdentityKey?.public) &&
    isBytes(c.signedPreKey?.keyPair?.private) &&
    typeof c.registrationId === 'number' &&
    typeof c.advSecretKey === 'string'
  );
}

/** True when the instance has stored creds (it was linked or at least started pairing). */
export function hasStoredAuth(db: Database, instanceId: string): boolean {
  return (
    db
      .query<{ n: number }, [string, string]>(
        'SELECT COUNT(*) AS n FROM whatsapp_auth WHERE instance_id = ? AND kind = ?',
      )
      .get(instanceId, CREDS_KIND)!.n > 0
  );
}

/** Deletes an instance's auth state without loading it (works on corrupt rows too). */
export function clearAuthState(db: Database, instanceId: string): void {
  db.query('DELETE FROM whatsapp_auth WHERE instance_id = ?').run(instanceId);
}

/**
 * Loads (or initialises) the auth state of one instance. Throws AuthStateCorruptError when the
 * creds row cannot be decoded; key rows are decoded lazily and throw the same error from get().
 */
export function useSqliteAuthState(db: Database, instanceId: string): SqliteAuthState {
  const selectOne = db.query<{ value: string }, [string, string, string]>(
    'SELECT value FROM whatsapp_auth WHERE instance_id = ? AND kind = ? AND key_id = ?',
  );
  const upsert = db.query<unknown, [string, string, string, string]>(
    `INSERT INTO whatsapp_auth (instance_id, kind, key_id, value) VALUES (?, ?, ?, ?)
     ON CONFLICT (instance_id, kind, key_id) DO UPDATE SET value = excluded.value`,
  );
  const remove = db.query<unknown, [string, string, string]>(
    'DELETE FROM whatsapp_auth WHERE instance_id = ? AND kind = ? AND key_id = ?',
  );

  const decode = (kind: string, keyId: string, text: string): unknown => {
    try {
      return JSON.parse(text, BufferJSON.reviver);
    } catch (err) {
      throw new AuthStateCorruptError(instanceId, kind, keyId, err);
    }
  };
  const encode = (value: unknown): string => JSON.stringify(value, BufferJSON.replacer);

  let creds: AuthenticationCreds;
  const credsRow = selectOne.get(instanceId, CREDS_KIND, CREDS_KEY_ID);
  if (credsRow) {
    const parsed = decode(CREDS_KIND, CREDS_KEY_ID, credsRow.value);
    if (!looksLikeCreds(parsed)) throw new AuthStateCorruptError(instanceId, CREDS_KIND, CREDS_KEY_ID);
    creds = parsed;
  } else {
    creds = initAuthCreds();
  }

  const setMany = db.transaction((data: SignalDataSet) => {
    for (const [kind, entries] of Object.entries(data)) {
      if (!entries) continue;
      for (const [keyId, value] of Object.entries(entries)) {
        if (value === null || value === undefined) remove.run(instanceId, kind, keyId);
        else upsert.run(instanceId, kind, keyId, encode(value));
      }
    }
  });

  const state: AuthenticationState = {
    creds,
    keys: {
      get: <T extends keyof SignalDataTypeMap>(type: T, ids: string[]) => {
        const out: { [id: string]: SignalDataTypeMap[T] } = {};
        for (const id of ids) {
          const row = selectOne.get(instanceId, type, id);
          if (!row) continue;
          let value = decode(type, id, row.value);
          if (value === null || value === undefined) continue;
          // Baileys expects the protobuf class for app-state keys, not the plain object.
          if (type === 'app-state-sync-key') value = proto.Message.AppStateSyncKeyData.fromObject(value as object);
          out[id] = value as SignalDataTypeMap[T];
        }
        return out;
      },
      set: (data: SignalDataSet) => {
        setMany(data);
      },
      clear: () => {
        db.query('DELETE FROM whatsapp_auth WHERE instance_id = ? AND kind != ?').run(instanceId, CREDS_KIND);
      },
    },
  };

  return {
    state,
    saveCreds() {
      // state.creds is mutated in place by Baileys on creds.update; persist the whole object.
      upsert.run(instanceId, CREDS_KIND, CREDS_KEY_ID, encode(state.creds));
    },
    clear() {
      clearAuthState(db, instanceId);
    },
  };
}
