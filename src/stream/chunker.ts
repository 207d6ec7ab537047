// Splits a reply into pieces a channel accepts (per-channel character and line limits).
//
// Preference order for a split point: paragraph break, line break, line break inside a ```
// fence (the piece is closed with ``` and the next one reopens with the same ```lang line),
// sentence end, whitespace, anywhere (never between the halves of a surrogate pair).
// Paragraph, line and sentence splits are never taken inside a fence.
//
// Invariant (tested): let S be the input. Each chunk is `[reopen + "\n"] + body + ["\n" + ticks]`
// where `body` is a slice S[start, end) and the optional parts are the fence markers we added.
// The slices are in order, and everything of S outside them (before the first, between two,
// after the last) is whitespace. Nothing else is added, lost or reordered.
// Lengths are UTF-16 code units (String.length), which never undercounts characters.
//
// If a limit is too small to hold a fence's opening line, or its markers plus one character of
// content, that chunk falls back to a plain hard split without markers (the only case where a
// fence may be left unbalanced in a chunk). maxChars below 2 is treated as 2 (a surrogate pair).

export interface ChunkOptions {
  maxChars: number;
  maxLines?: number;
}

export interface ChunkPiece {
  /** The chunk as sent. */
  text: string;
  /** Slice of the input this chunk carries. */
  start: number;
  end: number;
  /** Fence opening line we prepended (e.g. "```ts"), when the chunk starts inside a fence. */
  reopen: string | null;
  /** Closing backticks we appended, when the chunk ends inside a fence. */
  close: string | null;
}

interface Fence {
  /** Start of the opening line. */
  start: number;
  /** First character after the opening line's newline. */
  contentStart: number;
  /** Start of the closing line (input length when unclosed). */
  closeStart: number;
  /** End of the closing line, before its newline (input length when unclosed). */
  end: number;
  /** The opening line, trimmed: "```lang". */
  open: string;
  /** Its backticks, for the closing marker. */
  ticks: string;
}

/** For a trimmed line: the backticks if it opens a fence (CommonMark: info has no backtick). */
export function fenceOpenTicks(trimmed: string): string | null {
  const m = /^`{3,}/.exec(trimmed);
  if (!m) return null;
  return trimmed.slice(m[0].length).includes('`') ? null : m[0];
}

/** For a trimmed line inside a fence opened with `ticks`: does it close the fence? */
export function closesFence(trimmed: string, ticks: string): boolean {
  return /^`{3,}$/.test(trimmed) && trimmed.length >= ticks.length;
}

function findFences(s: string): Fence[] {
  const out: Fence[] = [];
  let open: Fence | null = null;
  let ls = 0;
  while (ls <= s.length) {
    let le = s.indexOf('\n', ls);
    if (le < 0) le = s.length;
    const t = s.slice(ls, le).trim();
    if (open) {
      if (closesFence(t, open.ticks)) {
        open.closeStart = ls;
        open.end = le;
        out.push(open);
        open = null;
      }
    } else {
      const ticks = fenceOpenTicks(t);
      if (ticks)
        open = {
          start: ls,
          contentStart: Math.min(le + 1, s.length),
          closeStart: s.length,
          end: s.length,
          open: t,
          ticks,
        };
    }
    if (le === s.length) break;
    ls = le + 1;
  }
  if (open) out.push(open);
  return out;
}

const isWs = (c: string | undefined) => c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\f' || c === '\v';
const SENTENCE_END = new Set(['.', '!', '?', '…']);
const CLOSERS = new Set(['"', "'", ')', ']', '”', '’', '»']);
const CJK_END = new Set(['。', '！', '？']);

export function chunkText(text: string, opts: ChunkOptions): string[] {
  return chunkTextDetailed(text, opts).map((p) => p.text);
}

export function chunkTextDetailed(text: string, opts: ChunkOptions): ChunkPiece[] {
  // 2 code units hold any character (a surrogate pair); below that no split is well-formed.
  const maxChars = Math.max(2, Math.floor(opts.maxChars));
  const maxLines = opts.maxLines === undefined ? Infinity : Math.max(1, Math.floor(opts.maxLines));
  const s = text;
  const n = s.length;
  const fences = findFences(s);
  // newlines before each index, for O(1) line counts of any slice
  const nl = new Uint32Array(n + 1);
  for (let i = 0; i < n; i++) nl[i + 1] = nl[i]! + (s.charCodeAt(i) === 10 ? 1 : 0);
  // first non-whitespace index at or after each index, for O(1) "is this slice blank"
  const nextInk = new Uint32Array(n + 1);
  nextInk[n] = n;
  for (let i = n - 1; i >= 0; i--) nextInk[i] = isWs(s[i]) ? nextInk[i + 1]! : i;

  /** The fence whose span strictly contains q (a split there would cut it). */
  const fenceAround = (q: number): Fence | null => {
    for (const f of fences) {
      if (f.start >= q) return null;
      if (q < f.end) return f;
    }
    return null;
  };
  /** The fence whose content p starts in (the chunk needs a reopen line). */
  const fenceOfStart = (p: number): Fence | null => {
    for (const f of fences) {
      if (f.start >= p) return null;
      // p === closeStart happens only after a last-resort split of a blank fence: the closing
      // line then needs its opener too.
      if (p >= f.contentStart && (p < f.closeStart || (p === f.closeStart && f.closeStart < n))) return f;
    }
    return null;
  };
  const trimEndIdx = (a: number, b: number) => {
    while (b > a && isWs(s[b - 1])) b--;
    return b;
  };
  const skipWs = (q: number) => {
    let j = q;
    let lastNl = -1;
    while (j < n && isWs(s[j])) {
      if (s[j] === '\n') lastNl = j;
      j++;
    }
    // keep the indentation of the line that follows
    return j >= n ? n : lastNl >= 0 ? lastNl + 1 : j;
  };

  const pieces: ChunkPiece[] = [];
  let p = skipWs(0);
  while (p < n) {
    const startFence = fenceOfStart(p);
    const reopen = startFence ? startFence.open : null;
    const prefixLen = reopen ? reopen.length + 1 : 0;
    const prefixLines = reopen ? 1 : 0;

    const fits = (e: number, close: string | null) =>
      prefixLen + (e - p) + (close ? close.length + 1 : 0) <= maxChars &&
      prefixLines + (nl[e]! - nl[p]!) + (close ? 1 : 0) <= maxLines - 1;

    const endAll = trimEndIdx(p, n);
    if (fits(endAll, null)) {
      pieces.push(piece(s, p, endAll, reopen, null));
      break;
    }

    // Classify a split point q (chunk body S[p, q)): null = forbidden, else whether it is inside a fence.
    const where = (q: number, allowEmptyHalf = false): { inside: Fence | null } | null => {
      const f = fenceAround(q);
      if (!f) return { inside: null };
      if (q < f.contentStart || q >= f.closeStart) return null; // would cut a marker line
      // both halves must keep some content, or one chunk would hold an empty code block
      if (!allowEmptyHalf && (nextInk[Math.max(p, f.contentStart)]! >= q || nextInk[q]! >= f.closeStart)) return null;
      return { inside: f };
    };
    const tryAt = (q: number, wantInside: boolean | null, allowEmptyHalf = false): number | null => {
      const w = where(q, allowEmptyHalf);
      if (!w) return null;
      if (wantInside !== null && (w.inside !== null) !== wantInside) return null;
      const e = trimEndIdx(p, q);
      if (e <= p) return null;
      return fits(e, w.inside ? w.inside.ticks : null) ? q : null;
    };

    const hi = Math.min(n - 1, p + maxChars);
    const levels: ((q: number) => number | null)[] = [
      // paragraph break: a newline followed by a blank line
      (q) => (s[q] === '\n' && isBlankLineAfter(s, q) ? tryAt(q, false) : null),
      (q) => (s[q] === '\n' ? tryAt(q, false) : null),
      (q) => (s[q] === '\n' ? tryAt(q, true) : null),
      (q) => (isSentenceBreak(s, q) ? tryAt(q, false) : null),
      (q) => (s[q] === ' ' || s[q] === '\t' ? tryAt(q, null) : null),
      (q) => (isLowSurrogate(s.charCodeAt(q)) && isHighSurrogate(s.charCodeAt(q - 1)) ? null : tryAt(q, null)),
      // last resort for a fence of blank lines taller than the limit: empty but balanced blocks
      (q) => (s[q] === '\n' ? tryAt(q, true, true) : null),
    ];
    let cut: number | null = null;
    for (const level of levels) {
      for (let q = hi; q > p && cut === null; q--) cut = level(q);
      if (cut !== null) break;
    }

    if (cut === null) {
      // Limits too small for the fence markers: plain hard split, no markers.
      let q = Math.min(n, p + maxChars);
      while (q > p + 1 && nl[q]! - nl[p]! > maxLines - 1) q--;
      if (q < n && q > p + 1 && isLowSurrogate(s.charCodeAt(q)) && isHighSurrogate(s.charCodeAt(q - 1))) q--;
      const e = Math.max(trimEndIdx(p, q), p + 1);
      pieces.push(piece(s, p, e, null, null));
      p = skipWs(e);
      continue;
    }
    const e = trimEndIdx(p, cut);
    const inside = where(cut, true)!.inside;
    pieces.push(piece(s, p, e, reopen, inside ? inside.ticks : null));
    p = skipWs(cut);
  }
  return pieces;
}

function piece(s: string, start: number, end: number, reopen: string | null, close: string | null): ChunkPiece {
  const text = (reopen ? `${reopen}\n` : '') + s.slice(start, end) + (close ? `\n${close}` : '');
  return { text, start, end, reopen, close };
}

function isBlankLineAfter(s: string, q: number): boolean {
  for (let i = q + 1; i < s.length; i++) {
    const c = s[i];
    if (c === '\n') return true;
    if (c !== ' ' && c !== '\t' && c !== '\r') return false;
  }
  return false;
}

function isSentenceBreak(s: string, q: number): boolean {
  const prev = s[q - 1];
  if (prev !== undefined && CJK_END.has(prev)) return true;
  if (s[q] !== ' ' && s[q] !== '\t') return false;
  if (prev !== undefined && SENTENCE_END.has(prev)) return true;
  const prev2 = s[q - 2];
  return prev !== undefined && CLOSERS.has(prev) && prev2 !== undefined && SENTENCE_END.has(prev2);
}

const isHighSurrogate = (c: number) => c >= 0xd800 && c <= 0xdbff;
const isLowSurrogate = (c: number) => c >= 0xdc00 && c <= 0xdfff;

/**
 * Progressive 'blocks' delivery: feed the agent's deltas, get each paragraph (text between blank
 * lines outside ``` fences) as soon as it is complete; `flush()` returns the rest at the end.
 * Blocks follow the chunker's whitespace rule: each is a slice of the full text with leading
 * blank lines and trailing whitespace removed; what lies between blocks is whitespace only.
 * A block can exceed a channel's limit; pass each through chunkText before sending.
 */
export class BlockSplitter {
  private buf = '';
  /** Start of the first line not yet examined. */
  private scan = 0;
  /** Start of the block being collected. */
  private blockStart = 0;
  /** Backticks of the open fence, if any. */
  private fence: string | null = null;

  push(delta: string): string[] {
    this.buf += delta;
    const out: string[] = [];
    for (;;) {
      const nlAt = this.buf.indexOf('\n', this.scan);
      if (nlAt < 0) break;
      const t = this.buf.slice(this.scan, nlAt).trim();
      if (this.fence) {
        if (closesFence(t, this.fence)) this.fence = null;
      } else {
        const ticks = fenceOpenTicks(t);
        if (ticks) this.fence = ticks;
        else if (t === '') {
          const block = tidyBlock(this.buf.slice(this.blockStart, this.scan));
          if (block) out.push(block);
          this.blockStart = nlAt + 1;
        }
      }
      this.scan = nlAt + 1;
    }
    if (this.blockStart > 0) {
      this.buf = this.buf.slice(this.blockStart);
      this.scan -= this.blockStart;
      this.blockStart = 0;
    }
    return out;
  }

  /** End of the reply: the last (possibly unterminated) block. */
  flush(): string[] {
    const block = tidyBlock(this.buf);
    this.buf = '';
    this.scan = 0;
    this.blockStart = 0;
    this.fence = null;
    return block ? [block] : [];
  }
}

/** Leading blank lines and trailing whitespace go; the first line keeps its indentation. */
function tidyBlock(b: string): string {
  let j = 0;
  let lastNl = -1;
  while (j < b.length && isWs(b[j])) {
    if (b[j] === '\n') lastNl = j;
    j++;
  }
  if (j >= b.length) return '';
  return b.slice(lastNl >= 0 ? lastNl + 1 : j).trimEnd();
}
