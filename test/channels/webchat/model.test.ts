// The widget's conversation state: the /ws seq rules (duplicates ignored, a gap waits for a resync
// or the final text), and what the log shows from history, live replies and local sends.
import { describe, expect, test } from 'bun:test';
import { Conversation } from '../../../src/channels/webchat/widget/model.ts';

const ev = (turnId: string, seq: number, type: string, more: Record<string, unknown> = {}) => ({
  turnId,
  seq,
  type,
  messageId: turnId,
  ...more,
});

describe('widget conversation model', () => {
  test('deltas in seq order grow the reply; a repeated seq is ignored', () => {
    const c = new Conversation();
    c.locals.push({ clientId: 'c1', text: 'hi', messageId: 'T', note: null });
    expect(c.apply(ev('T', 1, 'RUN_STARTED'))).toBe(true);
    expect(c.items(null).at(-1)).toMatchObject({ key: 'out:T', text: '…', typing: true });
    c.apply(ev('T', 2, 'TEXT_MESSAGE_START'));
    c.apply(ev('T', 3, 'TEXT_MESSAGE_CONTENT', { delta: 'hel' }));
    expect(c.apply(ev('T', 3, 'TEXT_MESSAGE_CONTENT', { delta: 'hel' }))).toBe(false);
    c.apply(ev('T', 4, 'TEXT_MESSAGE_CONTENT', { delta: 'lo' }));
    expect(c.items(null).map((i) => [i.key, i.text])).toEqual([
      ['in:T', 'hi'],
      ['out:T', 'hello'],
    ]);
  });

  test('after a gap the partial text is frozen until a resync; then live frames continue', () => {
    const c = new Conversation();
    c.locals.push({ clientId: 'c1', text: 'hi', messageId: 'T', note: null });
    c.apply(ev('T', 1, 'RUN_STARTED'));
    c.apply(ev('T', 2, 'TEXT_MESSAGE_START'));
    c.apply(ev('T', 3, 'TEXT_MESSAGE_CONTENT', { delta: 'a' }));
    c.apply(ev('T', 6, 'TEXT_MESSAGE_CONTENT', { delta: 'd' })); // 4 and 5 were missed
    expect(c.turn('T')).toMatchObject({ text: 'a', stale: true });
    expect(c.needsHistory('T')).toBe(true);
    c.resync({ turnId: 'T', text: 'abcd', seq: 6, status: 'running' });
    c.apply(ev('T', 7, 'TEXT_MESSAGE_CONTENT', { delta: 'e' }));
    expect(c.turn('T')).toMatchObject({ text: 'abcde', stale: false });
    c.apply(ev('T', 8, 'RUN_FINISHED', { result: { text: 'abcde' } }));
    expect(c.needsHistory('T')).toBe(false);
  });

  test('the history replaces live and local state; unanswered messages say so', () => {
    const c = new Conversation();
    c.locals.push({ clientId: 'c1', text: 'one', messageId: 'A', note: null });
    c.locals.push({ clientId: 'c2', text: 'two', messageId: null, note: 'sending…' });
    c.apply(ev('A', 1, 'RUN_STARTED'));
    c.setHistory([
      { id: 'A', direction: 'in', text: 'one', status: 'completed' },
      { id: 'A', direction: 'out', text: 'one', status: 'completed' },
      { id: 'B', direction: 'in', text: 'zero', status: 'blocked' },
    ]);
    expect(c.items('Welcome').map((i) => [i.key, i.text, i.note])).toEqual([
      ['welcome', 'Welcome', null],
      ['in:A', 'one', null],
      ['out:A', 'one', null],
      ['in:B', 'zero', 'not answered'],
      ['local:c2', 'two', 'sending…'],
    ]);
    expect(c.locals).toHaveLength(1);
  });
});
