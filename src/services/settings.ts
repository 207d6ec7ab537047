// Typed global settings. Unknown keys are rejected; values are validated by their definition.
import type { Database } from 'bun:sqlite';
import { NotFound, Validation } from '../core/errors.ts';
import { isoNow } from './ids.ts';
import { DEFAULT_MESSAGING, MESSAGING_LIMITS, MESSAGING_MODES, type MessagingOptions } from './instance-options.ts';

interface SettingDef {
  description: string;
  default: unknown;
  check(v: unknown): string | null;
}

const intBetween = (min: number, max: number) => (v: unknown) =>
  Number.isInteger(v) && (v as number) >= min && (v as number) <= max
    ? null
    : `must be an integer between ${min} and ${max}`;

export const SETTING_DEFS: Record<string, SettingDef> = {
  'agent.defaultTimeoutSeconds': {
    description: 'Agent timeout for new instances (seconds)',
    default: 60,
    check: intBetween(1, 600),
  },
  'traces.retentionDays': { description: 'Days traces and events are kept', default: 30, check: intBetween(1, 3650) },
  'audit.retentionDays': { description: 'Days API audit records are kept', default: 90, check: intBetween(1, 3650) },
  'inbox.dedupeRetentionDays': {
    description: 'Days a provider message id is remembered for dedupe (≥ 14)',
    default: 14,
    check: intBetween(14, 3650),
  },
  // The conversation mode of instances without their own `messaging` (see instance-options.ts).
  'messaging.defaultMode': {
    description: 'Conversation mode of instances without their own messaging: sequential, collect or interrupt',
    default: DEFAULT_MESSAGING.mode,
    check: (v) =>
      MESSAGING_MODES.includes(v as MessagingOptions['mode']) ? null : `must be one of ${MESSAGING_MODES.join(', ')}`,
  },
  'messaging.defaultDebounceMs': {
    description: 'Quiet time (ms) before a collect/interrupt turn starts, for instances without their own messaging',
    default: DEFAULT_MESSAGING.debounceMs,
    check: intBetween(...MESSAGING_LIMITS.debounceMs),
  },
  'messaging.defaultMaxWaitMs': {
    description:
      'A collect/interrupt turn starts after this long anyway (ms, 0 = no cap); below the debounce it caps it',
    default: DEFAULT_MESSAGING.maxWaitMs,
    check: intBetween(...MESSAGING_LIMITS.maxWaitMs),
  },
  'messaging.defaultMaxBatch': {
    description: 'Most messages answered in one collect/interrupt turn',
    default: DEFAULT_MESSAGING.maxBatch,
    check: intBetween(...MESSAGING_LIMITS.maxBatch),
  },
  'pipeline.maxAttempts': {
    description: 'Attempts before a message is dead-lettered',
    default: 5,
    check: intBetween(1, 100),
  },
  'rateLimit.messagesSendPerMinute': {
    description: 'Per-key limit of message sends per minute',
    default: 60,
    check: intBetween(1, 1_000_000),
  },
  'rateLimit.eventsListPerMinute': {
    description: 'Per-key limit of event/trace listings per minute',
    default: 100,
    check: intBetween(1, 1_000_000),
  },
  'rateLimit.instancesWritePerMinute': {
    description: 'Per-key limit of instance create/update/delete/actions per minute',
    default: 30,
    check: intBetween(1, 1_000_000),
  },
  'rateLimit.generalPerMinute': {
    description: 'Per-key limit of other API requests per minute',
    default: 1000,
    check: intBetween(1, 1_000_000),
  },
};

/** The global conversation-mode default (the `messaging.default*` settings). */
export function messagingDefaults(settings: Pick<SettingsService, 'value'>): MessagingOptions {
  return {
    mode: settings.value<MessagingOptions['mode']>('messaging.defaultMode'),
    debounceMs: settings.value<number>('messaging.defaultDebounceMs'),
    maxWaitMs: settings.value<number>('messaging.defaultMaxWaitMs'),
    maxBatch: settings.value<number>('messaging.defaultMaxBatch'),
  };
}

export interface SettingView {
  key: string;
  value: unknown;
  description: string;
  isDefault: boolean;
  updatedAt: string | null;
}

export class SettingsService {
  private cache = new Map<string, unknown>();
  private listeners: Array<(key: string) => void> = [];

  constructor(
    private db: Database,
    private overrides: Record<string, unknown> = {},
  ) {}

  onChange(fn: (key: string) => void) {
    this.listeners.push(fn);
  }

  private def(key: string): SettingDef {
    // Own keys only: '__proto__' or 'toString' must not find Object.prototype members.
    const d = Object.hasOwn(SETTING_DEFS, key) ? SETTING_DEFS[key] : undefined;
    if (!d) throw new NotFound(`Unknown setting '${key}'`, { known: Object.keys(SETTING_DEFS) });
    return d;
  }

  value<T = unknown>(key: string): T {
    if (this.cache.has(key)) return this.cache.get(key) as T;
    const d = this.def(key);
    const r = this.db.query<{ value_json: string }, [string]>('SELECT value_json FROM settings WHERE key = ?').get(key);
    const v = r ? JSON.parse(r.value_json) : (this.overrides[key] ?? d.default);
    this.cache.set(key, v);
    return v as T;
  }

  get(key: string): SettingView {
    const d = this.def(key);
    const r = this.db
      .query<{ value_json: string; updated_at: string }, [string]>(
        'SELECT value_json, updated_at FROM settings WHERE key = ?',
      )
      .get(key);
    return {
      key,
      value: r ? JSON.parse(r.value_json) : (this.overrides[key] ?? d.default),
      description: d.description,
      isDefault: !r,
      updatedAt: r?.updated_at ?? null,
    };
  }

  list(): SettingView[] {
    return Object.keys(SETTING_DEFS).map((k) => this.get(k));
  }

  /** Sets several keys atomically; any invalid key or value rejects the whole batch. */
  setMany(values: Record<string, unknown>): SettingView[] {
    const problems: Array<{ field: string; problem: string }> = [];
    for (const [k, v] of Object.entries(values)) {
      const d = Object.hasOwn(SETTING_DEFS, k) ? SETTING_DEFS[k] : undefined;
      if (!d) problems.push({ field: k, problem: 'is not a known setting' });
      else {
        const p = d.check(v);
        if (p) problems.push({ field: k, problem: p });
      }
    }
    if (problems.length) throw new Validation(problems.map((p) => `${p.field} ${p.problem}`).join('; '), problems);
    const now = isoNow();
    this.db.transaction(() => {
      for (const [k, v] of Object.entries(values)) {
        this.db
          .query(
            'INSERT INTO settings (key, value_json, updated_at) VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE SET value_json = excluded.value_json, updated_at = excluded.updated_at',
          )
          .run(k, JSON.stringify(v), now);
      }
    })();
    this.cache.clear();
    for (const k of Object.keys(values)) for (const l of this.listeners) l(k);
    return Object.keys(values).map((k) => this.get(k));
  }

  invalidate(): void {
    this.cache.clear();
  }
}
