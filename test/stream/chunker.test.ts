import { describe, expect, test } from 'bun:test';
import fc from 'fast-check';
import { BlockSplitter, type ChunkOptions, chunkText, chunkTextDetailed } from '../../src/stream/chunker.ts';

// --- an independent view of fences (line toggling), used to judge the chunker's output ---

function fenceLines(text: string): { line: string; isOpenOrClose: boolean }[] {
  return text.split('\n').map((l) => ({ line: l.trim(), isOpenOrClose: /^```/.test(l.trim()) }));
}

/** The opening line of the fence whose content `pos` lies in (pos at or after its first content line), or null. */
function enclosingFence(text: string, pos: number): string | null {
  let open: string | null = null;
  let lineStart = 0;
  while (lineStart < pos) {
    let lineEnd = text.indexOf('\n', lineStart);
    if (lineEnd < 0) lineEnd = text.length;
    if (lineEnd >= pos) break; // pos is inside this line, not after it
    const line = text.slice(lineStart, lineEnd).trim();
    if (/^```/.test(line)) open = open ? null : line;
    lineStart = lineEnd + 1;
  }
  return open;
}

function balanced(chunk: string): boolean {
  return fenceLines(chunk).filter((l) => l.isOpenOrClose).length % 2 === 0;
}

function lineCount(s: string) {
  return s.split('\n').length;
}

/** The whitespace rule: chunk bodies are in-order slices with only whitespace around them. */
function assertSlicesCover(text: string, pieces: { start: number; end: number }[]) {
  let cursor = 0;
  for (const p of pieces) {
    expect(p.start).toBeGreaterThanOrEqual(cursor);
    expect(p.end).toBeGreaterThan(p.start);
    expect(/^\s*$/.test(text.slice(cursor, p.start))).toBe(true);
    cursor = p.end;
  }
  expect(/^\s*$/.test(text.slice(cursor))).toBe(true);
}

function checkChunks(text: string, opts: ChunkOptions) {
  const pieces = chunkTextDetailed(text, opts);
  const chunks = chunkText(text, opts);
  expect(chunks).toEqual(pieces.map((p) => p.text));
  for (const p of pieces) {
    expect(p.text.length).toBeLessThanOrEqual(opts.maxChars);
    if (opts.maxLines) expect(lineCount(p.text)).toBeLessThanOrEqual(opts.maxLines);
    expect(p.text.isWellFormed()).toBe(true);
    // the chunk is its slice plus only the fence markers we said we added
    let body = p.text;
    if (p.reopen) {
      expect(body.startsWith(`${p.reopen}\n`)).toBe(true);
      body = body.slice(p.reopen.length + 1);
    }
    if (p.close) {
      expect(body.endsWith(`\n${p.close}`)).toBe(true);
      body = body.slice(0, -(p.close.length + 1));
    }
    expect(body).toBe(text.slice(p.start, p.end));
    // a reopen names the fence the slice starts in, and only then
    expect(p.reopen).toBe(enclosingFence(text, p.start));
  }
  assertSlicesCover(text, pieces);
  return pieces;
}

// --- generators ---

const word = fc.constantFrom(
  'olá',
  'mundo',
  'the',
  'agent',
  'replies',
  '🚀',
  '日本語',
  'ção',
  'x'.repeat(45),
  'ok',
  'fence`d',
  'a',
);
const sentence = fc
  .tuple(fc.array(word, { minLength: 1, maxLength: 12 }), fc.constantFrom('.', '!', '?', ''))
  .map(([ws, end]) => ws.join(' ') + end);
const paragraph = fc
  .array(sentence, { minLength: 1, maxLength: 5 })
  .chain((ss) => fc.constantFrom(' ', '\n').map((sep) => ss.join(sep)));
const codeLine = fc
  .tuple(fc.constantFrom('', '  ', '    '), fc.array(word, { maxLength: 8 }))
  .map(([ind, ws]) => ind + ws.join(' '));
const fence = fc
  .tuple(fc.constantFrom('', 'ts', 'python', 'sh'), fc.array(codeLine, { minLength: 1, maxLength: 25 }))
  .map(([lang, lines]) => `\`\`\`${lang}\n${lines.join('\n')}\n\`\`\``);
const doc = fc
  .array(fc.oneof({ weight: 3, arbitrary: paragraph }, { weight: 1, arbitrary: fence }), {
    minLength: 1,
    maxLength: 10,
  })
  .chain((blocks) => fc.constantFrom('\n\n', '\n\n\n', '\r\n\r\n', '\n').map((sep) => blocks.join(sep)));

describe('chunkText', () => {
  test('short text is one chunk, unchanged', () => {
    expect(chunkText('hello there', { maxChars: 100 })).toEqual(['hello there']);
    expect(chunkText('  \n\n', { maxChars: 100 })).toEqual([]);
  });

  test('prefers a paragraph break, then a line break', () => {
    const text = 'First paragraph here.\nsecond line.\n\nNext paragraph is here.';
    expect(chunkText(text, { maxChars: 45 })).toEqual([
      'First paragraph here.\nsecond line.',
      'Next paragraph is here.',
    ]);
    expect(chunkText('line one is here\nline two is here\nline three', { maxChars: 36 })).toEqual([
      'line one is here\nline two is here',
      'line three',
    ]);
  });

  test('then sentence, then whitespace, then hard', () => {
    expect(chunkText('One sentence here. Another one follows here.', { maxChars: 30 })).toEqual([
      'One sentence here.',
      'Another one follows here.',
    ]);
    expect(chunkText('alpha beta gamma delta epsilon', { maxChars: 12 })).toEqual([
      'alpha beta',
      'gamma delta',
      'epsilon',
    ]);
    expect(chunkText('abcdefghij', { maxChars: 4 })).toEqual(['abcd', 'efgh', 'ij']);
  });

  test('never splits a surrogate pair', () => {
    const chunks = chunkText('🚀'.repeat(10), { maxChars: 5 });
    expect(chunks.join('')).toBe('🚀'.repeat(10));
    for (const c of chunks) {
      expect(c.length).toBeLessThanOrEqual(5);
      expect(c.isWellFormed()).toBe(true);
    }
  });

  test('a fence that fits is moved whole to the next chunk', () => {
    const code = '```ts\nconst a = 1;\nconst b = 2;\n```';
    const text = `Here is the code you asked for, with an explanation.\n${code}\nDone.`;
    const chunks = chunkText(text, { maxChars: 60 });
    expect(chunks).toContain(`${code}\nDone.`);
  });

  test('a fence too long for one chunk is closed and reopened with its language', () => {
    const lines = Array.from({ length: 12 }, (_, i) => `print("line ${i}")`);
    const text = `Intro.\n\n\`\`\`python\n${lines.join('\n')}\n\`\`\`\n\nOutro.`;
    const pieces = checkChunks(text, { maxChars: 80 });
    const chunks = pieces.map((p) => p.text);
    expect(chunks[0]).toBe('Intro.');
    expect(chunks[1]!.startsWith('```python\nprint("line 0")')).toBe(true);
    expect(chunks[1]!.endsWith('\n```')).toBe(true);
    for (const c of chunks.slice(2, -1)) expect(c.startsWith('```python\n')).toBe(true);
    for (const c of chunks) expect(balanced(c)).toBe(true);
    // every code line arrives exactly once
    const got = chunks
      .join('\n')
      .split('\n')
      .filter((l) => l.startsWith('print'));
    expect(got).toEqual(lines);
  });

  test('a paragraph break inside a fence is not a split point', () => {
    const text = '```\nfirst\n\nsecond\n```\nafter the fence there is text';
    const chunks = chunkText(text, { maxChars: 26 });
    expect(chunks[0]).toBe('```\nfirst\n\nsecond\n```');
  });

  test('Discord: 2000 characters and 17 lines', () => {
    const text = Array.from({ length: 60 }, (_, i) => `line ${i}`).join('\n');
    const chunks = chunkText(text, { maxChars: 2000, maxLines: 17 });
    expect(chunks.length).toBe(4);
    for (const c of chunks) expect(lineCount(c)).toBeLessThanOrEqual(17);
    expect(chunks.join('\n')).toBe(text);
  });

  test('an unclosed fence at the end stays as the agent wrote it', () => {
    const text = `See:\n\n\`\`\`js\n${Array.from({ length: 8 }, (_, i) => `f(${i});`).join('\n')}`;
    const pieces = checkChunks(text, { maxChars: 30 });
    expect(pieces[pieces.length - 1]!.close).toBeNull();
    expect(pieces[pieces.length - 1]!.text.startsWith('```js\n')).toBe(true);
  });

  test('property: within limits, fences balanced, nothing lost but whitespace at splits', () => {
    fc.assert(
      fc.property(
        doc,
        fc.integer({ min: 30, max: 400 }),
        fc.option(fc.integer({ min: 3, max: 30 }), { nil: undefined }),
        (text, maxChars, maxLines) => {
          const pieces = checkChunks(text, { maxChars, maxLines });
          for (const p of pieces) expect(balanced(p.text)).toBe(true);
        },
      ),
      { numRuns: 400 },
    );
  });

  test('property: arbitrary strings (any characters, tiny limits) keep the limits and lose nothing', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: fc.constantFrom('a', ' ', '\n', '.', '`', '🚀', 'é', '\r'), maxLength: 300 }),
        fc.integer({ min: 2, max: 50 }),
        fc.option(fc.integer({ min: 1, max: 6 }), { nil: undefined }),
        (text, maxChars, maxLines) => {
          const pieces = chunkTextDetailed(text, { maxChars, maxLines });
          for (const p of pieces) {
            expect(p.text.length).toBeLessThanOrEqual(maxChars);
            if (maxLines) expect(lineCount(p.text)).toBeLessThanOrEqual(maxLines);
            expect(p.text.isWellFormed()).toBe(true);
          }
          assertSlicesCover(text, pieces);
        },
      ),
      { numRuns: 400 },
    );
  });

  test('a 200 kB reply chunks quickly', () => {
    const text = Array.from({ length: 2000 }, (_, i) =>
      i % 7 === 0 ? `\`\`\`ts\n${'let x = 1;\n'.repeat(30)}\`\`\`` : `Paragraph ${i} with some words. And more.`,
    ).join('\n\n');
    const t0 = performance.now();
    const chunks = chunkText(text, { maxChars: 2000, maxLines: 17 });
    expect(performance.now() - t0).toBeLessThan(1000);
    for (const c of chunks) expect(balanced(c)).toBe(true);
  });
});

describe('BlockSplitter', () => {
  test('emits each paragraph once it is complete, the rest on flush', () => {
    const b = new BlockSplitter();
    expect(b.push('Para one')).toEqual([]);
    expect(b.push('.\n')).toEqual([]);
    expect(b.push('\nPara two')).toEqual(['Para one.']);
    expect(b.push(' continues.\n\n\n\nThree')).toEqual(['Para two continues.']);
    expect(b.flush()).toEqual(['Three']);
    expect(b.flush()).toEqual([]);
  });

  test('blank lines inside a fence do not end a block', () => {
    const b = new BlockSplitter();
    const out = [...b.push('Look:\n\n```py\nx = 1\n\n\ny = 2\n'), ...b.push('```\n\nEnd.'), ...b.flush()];
    expect(out).toEqual(['Look:', '```py\nx = 1\n\n\ny = 2\n```', 'End.']);
  });

  test('property: same blocks however the deltas are split; slices of the text with whitespace between', () => {
    fc.assert(
      fc.property(doc, fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 200 }), (text, sizes) => {
        const whole = new BlockSplitter();
        const expected = [...whole.push(text), ...whole.flush()];
        const b = new BlockSplitter();
        const got: string[] = [];
        let i = 0;
        let k = 0;
        while (i < text.length) {
          const size = sizes[k++ % sizes.length]!;
          got.push(...b.push(text.slice(i, i + size)));
          i += size;
        }
        got.push(...b.flush());
        expect(got).toEqual(expected);
        let cursor = 0;
        for (const block of got) {
          const at = text.indexOf(block, cursor);
          expect(at).toBeGreaterThanOrEqual(0);
          expect(/^\s*$/.test(text.slice(cursor, at))).toBe(true);
          cursor = at + block.length;
          // a block is one paragraph: any blank line in it is inside a fence
          let inFence = false;
          for (const line of block.split('\n')) {
            if (/^```/.test(line.trim())) inFence = !inFence;
            else if (!inFence) expect(line.trim()).not.toBe('');
          }
        }
        expect(/^\s*$/.test(text.slice(cursor))).toBe(true);
      }),
      { numRuns: 300 },
    );
  });
});
