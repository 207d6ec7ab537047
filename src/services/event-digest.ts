// Events rendered for an agent or a person to read: a one-line summary of a set of events and a
// compact transcript (the events search API's summary and agent formats).
import type { EventView } from './events.ts';

/** A compact transcript an LLM can read: one line per event, oldest first. */
export function asContext(events: EventView[], personName: (id: string) => string | null): string {
  const lines = [...events].reverse().map((e) => {
    const at = e.createdAt.replace('T', ' ').slice(0, 19);
    const p = e.payload ?? {};
    const inst = (p.instanceName as string | null) ?? e.instanceId ?? '?';
    const where = `${e.channel ?? '?'}/${inst}`;
    const text = (e.text ?? '').replace(/\s+/g, ' ').trim();
    const person = e.personId ? (personName(e.personId) ?? e.personId) : null;
    const sender = (p.sender as { name?: string; id?: string } | undefined) ?? {};
    const media = e.contentType && e.contentType !== 'text' ? ` [${e.contentType}]` : '';
    if (e.type === 'message.received')
      return `[${at}] ${where} ${sender.name ?? person ?? sender.id ?? 'user'}: ${text}${media}`;
    if (e.type === 'message.sent') return `[${at}] ${where} assistant${person ? ` → ${person}` : ''}: ${text}${media}`;
    if (e.type === 'message.failed')
      return `[${at}] ${where} send failed${person ? ` → ${person}` : ''}: ${text} (${String(p.error ?? 'error')})`;
    return `[${at}] ${where} ${e.type}${text ? `: ${text}` : ''}`;
  });
  return lines.join('\n');
}

/** One sentence about a set of events (format summary/agent). */
export function summarize(events: EventView[]): string {
  if (events.length === 0) return 'No events.';
  const byType = new Map<string, number>();
  for (const e of events) byType.set(e.type, (byType.get(e.type) ?? 0) + 1);
  const channels = [...new Set(events.map((e) => e.channel).filter(Boolean))].sort();
  const times = events.map((e) => e.createdAt).sort();
  const types = [...byType].map(([t, n]) => `${n} ${t}`).join(', ');
  return `${events.length} events (${types}) from ${times[0]} to ${times.at(-1)}${channels.length ? ` on ${channels.join(', ')}` : ''}.`;
}
