// The checker must catch each kind of broken guarantee (otherwise the chaos tests prove nothing).
import { describe, expect, test } from 'bun:test';
import { checkHistory, type HistoryEvent } from './history.ts';

const replyFor = (t: string) => `echo: ${t}`;

function goodRun(): HistoryEvent[] {
  const ev: HistoryEvent[] = [{ src: 'harness', type: 'start', epoch: 0, crashAt: null, at: 0 }];
  for (let i = 0; i < 3; i++) {
    const id = `m${i}`;
    ev.push({ src: 'load', type: 'post', id, chat: '1', text: `t${i}`, at: 1 });
    ev.push({ src: 'load', type: 'ack', id, http: 200, status: 'received', traceId: `tr${i}`, at: 2 });
    ev.push({ src: 'agent', type: 'call', key: `k${i}`, message: `t${i}`, at: 3 + i });
    ev.push({ src: 'channel', type: 'send', number: '1', text: `echo: t${i}`, at: 4 + i });
    ev.push({
      src: 'gateway',
      type: 'trace',
      traceId: `tr${i}`,
      providerId: id,
      conversationId: 'c',
      seq: i + 1,
      status: 'completed',
      responseText: `echo: t${i}`,
      possibleDuplicate: 0,
      agentRuns: 1,
      attempts: 0,
    });
  }
  ev.push({ src: 'gateway', type: 'summary', inboxUnfinished: 0, outboxSending: 0, deadLetters: 0 });
  return ev;
}

const violations = (ev: HistoryEvent[], crash = false) => {
  if (crash)
    ev.splice(
      1,
      0,
      { src: 'harness', type: 'exit', epoch: 0, signal: 'SIGKILL', code: null, at: 2 },
      { src: 'harness', type: 'start', epoch: 1, crashAt: null, at: 4 },
    );
  return checkHistory(ev, { replyFor, maxRssBytes: 1000 }).violations;
};

describe('history checker', () => {
  test('a clean run passes', () => {
    expect(violations(goodRun())).toEqual([]);
  });

  test('loss: an acked message without a reply, or still pending', () => {
    const a = goodRun().filter((e) => !(e.type === 'send' && e.text === 'echo: t1'));
    expect(violations(a).join()).toContain('loss: m1 completed but its reply never reached the channel');
    const b = goodRun().map((e) => (e.type === 'trace' && e.providerId === 'm2' ? { ...e, status: 'pending' } : e));
    expect(violations(b).join()).toContain('loss: m2 acked but still pending');
  });

  test('order: replies out of inbox order', () => {
    const ev = goodRun();
    const sends = ev.filter((e) => e.type === 'send');
    const i0 = ev.indexOf(sends[0]!),
      i2 = ev.indexOf(sends[2]!);
    [ev[i0], ev[i2]] = [ev[i2]!, ev[i0]!];
    expect(violations(ev).join()).toContain('order: in chat 1');
  });

  test('duplicates: uncounted duplicate send, duplicate without crash, two committed runs, two calls in one lifetime', () => {
    const dup = goodRun();
    dup.push({ src: 'channel', type: 'send', number: '1', text: 'echo: t0', at: 9 });
    const v = violations(dup);
    expect(v.join()).toContain('uncounted duplicate: m0');
    expect(v.join()).toContain('duplicate send without a crash: m0');
    // Counted and after a crash: allowed.
    const counted = dup.map((e) => (e.type === 'trace' && e.providerId === 'm0' ? { ...e, possibleDuplicate: 1 } : e));
    expect(violations(counted, true)).toEqual([]);
    const runs = goodRun().map((e) => (e.type === 'trace' && e.providerId === 'm1' ? { ...e, agentRuns: 2 } : e));
    expect(violations(runs).join()).toContain('m1 has 2 committed agent runs');
    const calls = goodRun();
    calls.push({ src: 'agent', type: 'call', key: 'k1', message: 't1', at: 5 });
    expect(violations(calls).join()).toContain('agent called 2× for m1 within one process lifetime');
    // The same repeat across a crash (the first call was cut before its result was committed) is allowed.
    const acrossCrash = goodRun();
    acrossCrash.push({ src: 'agent', type: 'call', key: 'k0', message: 't0', at: 5 });
    expect(violations(acrossCrash, true)).toEqual([]);
  });

  test('phantom sends and unbounded resources', () => {
    const ev = goodRun();
    ev.push({ src: 'channel', type: 'send', number: '1', text: 'echo: nobody', at: 9 });
    ev.push({ src: 'harness', type: 'rss', epoch: 0, bytes: 5000, at: 9 });
    ev.push({ src: 'gateway', type: 'summary', inboxUnfinished: 2, outboxSending: 1, deadLetters: 0 });
    const v = violations(ev).join('\n');
    expect(v).toContain('phantom send');
    expect(v).toContain('RSS reached');
    expect(v).toContain('2 inbox rows left unfinished');
    expect(v).toContain("1 outbox parts left 'sending'");
  });
});
