// Private stop-gap splitter until the shared chunker (src/stream/chunker.ts, chunkText) lands:
// the adapter must never hand Discord more than 2000 characters or 17 lines in one message,
// even if the pipeline did not pre-chunk. Prefers paragraph, then line, then space boundaries.
export function splitForDiscord(text: string, maxChars: number, maxLines: number): string[] {
  const pieces: string[] = [];
  let rest = text;
  while (rest.length > 0) {
    if (fits(rest, maxChars, maxLines)) {
      pieces.push(rest);
      break;
    }
    const cut = cutPoint(rest, maxChars, maxLines);
    const piece = rest.slice(0, cut).replace(/\s+$/, '');
    rest = rest.slice(cut).replace(/^\s+/, '');
    if (piece.length > 0) pieces.push(piece);
  }
  return pieces.length > 0 ? pieces : [''];
}

function fits(s: string, maxChars: number, maxLines: number): boolean {
  if (s.length > maxChars) return false;
  let lines = 1;
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) === 10 && ++lines > maxLines) return false;
  return true;
}

/** Largest prefix length that fits, cut at the best boundary available. */
function cutPoint(s: string, maxChars: number, maxLines: number): number {
  let limit = Math.min(s.length, maxChars);
  let lines = 1;
  for (let i = 0; i < limit; i++) {
    if (s.charCodeAt(i) === 10 && ++lines > maxLines) {
      limit = i; // stop before the newline that would open line maxLines+1
      break;
    }
  }
  const window = s.slice(0, limit);
  for (const sep of ['\n\n', '\n', ' ']) {
    const at = window.lastIndexOf(sep);
    if (at > limit / 3) return at + sep.length;
  }
  // No good boundary: hard cut, but not between the halves of a surrogate pair.
  const code = s.charCodeAt(limit - 1);
  return code >= 0xd800 && code <= 0xdbff && limit > 1 ? limit - 1 : limit;
}
