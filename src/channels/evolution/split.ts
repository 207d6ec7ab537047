// Splits a long reply into WhatsApp-sized messages: on paragraph boundaries, never inside a ``` code
// fence. A fence that alone exceeds the limit is cut at line breaks and each part is re-wrapped in the
// same fence, so every message still renders as code.
// (Private to the Evolution channel until the shared chunker in src/stream/ exists.)

interface Block {
  text: string;
  /** The whitespace that separated this block from the previous one in the source. */
  sep: string;
  fence?: { open: string; close: string };
}

const FENCE_OPEN = /^ {0,3}(`{3,}|~{3,})/;

function isFenceClose(line: string, marker: string): boolean {
  const m = /^ {0,3}(`{3,}|~{3,})\s*$/.exec(line);
  return !!m && m[1][0] === marker[0] && m[1].length >= marker.length;
}

function toBlocks(text: string): Block[] {
  const lines = text.replace(/\r\n/g, '\n').split('\n');
  const blocks: Block[] = [];
  let blanks: string[] = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (line.trim() === '') {
      blanks.push(line);
      i++;
      continue;
    }
    const sep = blocks.length === 0 ? '' : '\n' + blanks.map((b) => b + '\n').join('');
    blanks = [];
    const open = FENCE_OPEN.exec(line);
    if (open) {
      let j = i + 1;
      while (j < lines.length && !isFenceClose(lines[j], open[1])) j++;
      const closed = j < lines.length;
      const end = closed ? j : lines.length - 1;
      blocks.push({
        text: lines.slice(i, end + 1).join('\n'),
        sep,
        fence: { open: line, close: closed ? lines[j] : open[1] },
      });
      i = end + 1;
      continue;
    }
    let j = i;
    while (j < lines.length && lines[j].trim() !== '' && (j === i || !FENCE_OPEN.test(lines[j]))) j++;
    blocks.push({ text: lines.slice(i, j).join('\n'), sep });
    i = j;
  }
  return blocks;
}

/** Cut plain text to ≤ max: at a line break, else a space, else hard (never between surrogates). */
function splitPlain(text: string, max: number): string[] {
  const out: string[] = [];
  let rest = text;
  while (rest.length > max) {
    let cut = rest.lastIndexOf('\n', max);
    if (cut < max / 2) {
      const space = rest.lastIndexOf(' ', max);
      cut = space >= max / 2 ? space : cut > 0 ? cut : space > 0 ? space : max;
    }
    if (cut <= 0) cut = max;
    const code = rest.charCodeAt(cut - 1);
    if (code >= 0xd800 && code <= 0xdbff) cut -= 1;
    const piece = rest.slice(0, cut).replace(/\s+$/, '');
    if (piece) out.push(piece);
    rest = rest.slice(cut).replace(/^[ \t]*\n?/, '');
  }
  if (rest.trim()) out.push(rest);
  return out;
}

function splitBlock(block: Block, max: number): string[] {
  if (!block.fence) return splitPlain(block.text, max);
  const { open, close } = block.fence;
  const lines = block.text.split('\n');
  const closedInSource = lines.length > 1 && lines[lines.length - 1] === close;
  const inner = lines.slice(1, closedInSource ? -1 : undefined).join('\n');
  const budget = max - open.length - close.length - 2;
  if (budget < 1) return splitPlain(block.text, max);
  return splitPlain(inner, budget).map((part) => `${open}\n${part}\n${close}`);
}

/** Splits `text` into parts of at most `max` characters (UTF-16 units), in order. */
export function splitMessage(text: string, max: number): string[] {
  if (max < 1) throw new RangeError('max must be ≥ 1');
  if (text.length <= max) return text.trim() ? [text] : [];
  const chunks: string[] = [];
  let current = '';
  for (const block of toBlocks(text)) {
    if (current && current.length + block.sep.length + block.text.length <= max) {
      current += block.sep + block.text;
      continue;
    }
    if (current) chunks.push(current);
    if (block.text.length <= max) {
      current = block.text;
      continue;
    }
    const parts = splitBlock(block, max);
    chunks.push(...parts.slice(0, -1));
    current = parts[parts.length - 1] ?? '';
  }
  if (current) chunks.push(current);
  return chunks;
}
