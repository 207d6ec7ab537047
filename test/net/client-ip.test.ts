// The client's address for the audit log and a key's lastUsedIp: the socket peer, and
// X-Forwarded-For only from TRUSTED_PROXIES.
import { describe, expect, test } from 'bun:test';
import { clientIpResolver } from '../../src/net/client-ip.ts';
import { buildServer } from '../../src/server.ts';
import { ADMIN_KEY, createTestGateway } from '../helpers.ts';

describe('clientIpResolver', () => {
  test('the socket address unless the peer is a trusted proxy; then the last untrusted hop', () => {
    const none = clientIpResolver([]);
    expect(none('198.51.100.4', '203.0.113.7')).toBe('198.51.100.4');
    expect(none(null, '203.0.113.7')).toBeNull();

    const trusted = clientIpResolver(['127.0.0.1', '10.0.0.0/8', 'fd00::/8']);
    expect(trusted('127.0.0.1', '203.0.113.7')).toBe('203.0.113.7');
    expect(trusted('::ffff:127.0.0.1', '203.0.113.7')).toBe('203.0.113.7');
    expect(trusted('127.0.0.1', '1.1.1.1, 203.0.113.7, 10.2.3.4')).toBe('203.0.113.7'); // 1.1.1.1 was written by the client
    expect(trusted('fd00::5', '2001:db8::9')).toBe('2001:db8::9');
    expect(trusted('127.0.0.1', '10.0.0.1, 10.0.0.2')).toBe('10.0.0.1');
    expect(trusted('127.0.0.1', 'not-an-ip')).toBe('127.0.0.1');
    expect(trusted('127.0.0.1', null)).toBe('127.0.0.1');
    expect(trusted('198.51.100.4', '203.0.113.7')).toBe('198.51.100.4'); // not a proxy of ours
  });
});

async function auditedIp(env: Record<string, string>, headers: Record<string, string>) {
  const t = createTestGateway(env);
  const app = buildServer(t.gw).listen({ port: 0, hostname: '127.0.0.1' });
  try {
    const res = await fetch(`http://127.0.0.1:${app.server!.port}/api/v2/instances`, {
      headers: { 'x-api-key': ADMIN_KEY, ...headers },
    });
    expect(res.status).toBe(200);
    const end = Date.now() + 2000;
    const adminId = t.gw.keys.list()[0].id;
    while (t.gw.audit.count(adminId) < 1) {
      if (Date.now() > end) throw new Error('no audit row');
      await Bun.sleep(2);
    }
    const audit = await t.call('GET', `/api/v2/keys/${adminId}/audit`);
    const ip = audit.body.items.find((r: { path: string }) => r.path === '/api/v2/instances').ip;
    t.gw.audit.flush();
    const lastUsedIp = (await t.call('GET', `/api/v2/keys/${adminId}`)).body.data.lastUsedIp;
    return { ip, lastUsedIp };
  } finally {
    await app.stop(true);
    await t.close();
  }
}

describe('audit ip over a real socket', () => {
  test('the socket address is recorded; a forged X-Forwarded-For is ignored', async () => {
    const r = await auditedIp({}, { 'x-forwarded-for': '203.0.113.7' });
    expect(r.ip).toBe('127.0.0.1');
    expect(r.lastUsedIp).toBe('127.0.0.1');
  });

  test('behind a trusted proxy the forwarded client address is recorded', async () => {
    const r = await auditedIp(
      { TRUSTED_PROXIES: '127.0.0.1,10.0.0.0/8' },
      { 'x-forwarded-for': '203.0.113.7, 10.0.0.1' },
    );
    expect(r.ip).toBe('203.0.113.7');
    expect(r.lastUsedIp).toBe('203.0.113.7');
  });
});
