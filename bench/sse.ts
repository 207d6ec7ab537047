// SSE parse rate of the AG-UI client path (bytes → UTF-8 → eventsource-parser → AG-UI events),
// over a large in-memory stream framed by the reference @ag-ui/encoder, fed in 16 KiB network-
// sized chunks. Run: bun bench/sse.ts [events]
import { EventEncoder } from '@ag-ui/encoder';
import { AguiStream } from '../src/agents/agui.ts';
import { SseDecoder } from '../src/agents/sse.ts';

const deltas = Number(process.argv[2] ?? 500_000);
const enc = new EventEncoder();
const words = ['olá ', 'mundo ', 'the ', 'agent ', 'is ', 'writing ', '🚀 ', 'ção ', 'code ', 'here. '];
const parts: string[] = [enc.encodeSSE({ type: 'RUN_STARTED', threadId: 't', runId: 'r' } as any)];
parts.push(enc.encodeSSE({ type: 'TEXT_MESSAGE_START', messageId: 'm', role: 'assistant' } as any));
let expected = '';
for (let i = 0; i < deltas; i++) {
  const delta = words[i % words.length]!;
  expected += delta;
  parts.push(enc.encodeSSE({ type: 'TEXT_MESSAGE_CONTENT', messageId: 'm', delta } as any));
}
parts.push(enc.encodeSSE({ type: 'TEXT_MESSAGE_END', messageId: 'm' } as any));
parts.push(enc.encodeSSE({ type: 'RUN_FINISHED', threadId: 't', runId: 'r' } as any));
const bytes = new TextEncoder().encode(parts.join(''));
const events = parts.length;

const CHUNK = 16 * 1024;
function parseOnce(): string {
  const d = new SseDecoder();
  const s = new AguiStream();
  let final: string | null = null;
  for (let off = 0; off < bytes.length; off += CHUNK) {
    for (const item of d.push(bytes.subarray(off, off + CHUNK))) {
      if (item.kind !== 'event') continue;
      for (const e of s.handle(item)) if (e.type === 'final') final = e.text;
    }
  }
  d.end();
  if (final === null) throw new Error('stream did not finish');
  return final;
}

if (parseOnce() !== expected) throw new Error('parsed text differs from the sent text');
const runs = 5;
const times: number[] = [];
for (let r = 0; r < runs; r++) {
  const t0 = performance.now();
  parseOnce();
  times.push(performance.now() - t0);
}
times.sort((a, b) => a - b);
const median = times[Math.floor(runs / 2)]! / 1000;
const mb = bytes.length / 1024 / 1024;
console.log(
  `SSE (AG-UI) parse: ${events.toLocaleString('en')} events, ${mb.toFixed(1)} MiB, ${CHUNK / 1024} KiB chunks — ` +
    `median of ${runs}: ${(events / median / 1e6).toFixed(2)} M events/s, ${(mb / median).toFixed(1)} MiB/s`,
);
