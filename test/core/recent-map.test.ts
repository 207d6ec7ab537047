import { expect, test } from 'bun:test';
import { RecentMap } from '../../src/core/recent-map.ts';

test('past its limit, the entry written longest ago is dropped; writing a key again makes it recent', () => {
  const m = new RecentMap<string, number>(2);
  m.set('a', 1).set('b', 2);
  m.set('a', 3); // a is now the most recent
  m.set('c', 4);
  expect([...m]).toEqual([
    ['a', 3],
    ['c', 4],
  ]);
});
