// Secrets stay out of the logs: every channel's secret fields (v1 and v2 names) are redacted by the
// logger, so a logged instance config or request body never carries one.
import { describe, expect, test } from 'bun:test';
import { CHANNELS } from '../src/channels/registry.ts';
import { createLogger, REDACT_PATHS } from '../src/log.ts';

describe('log redaction', () => {
  test("every channel definition's secret field is redacted, at the top level and one level down", () => {
    const missing: string[] = [];
    for (const d of CHANNELS)
      for (const f of d.fields.filter((x) => x.secret))
        for (const name of [f.v1, f.v2])
          if (!REDACT_PATHS.includes(name) || !REDACT_PATHS.includes(`*.${name}`)) missing.push(`${d.kind}: ${name}`);
    expect(missing).toEqual([]);
  });

  test('a logged config with secrets shows [redacted] instead of them', () => {
    const lines: string[] = [];
    const log = createLogger('info', { destination: { write: (l: string) => void lines.push(l) } as never });
    log.info({ config: { access_token: 'EAAG-SECRET', telegramBotToken: '123:SECRET', phone_number_id: '42' } }, 'x');
    expect(lines.join('')).not.toContain('SECRET');
    expect(lines.join('')).toContain('"phone_number_id":"42"');
  });
});
