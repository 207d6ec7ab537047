// The widget's conversation state, free of the DOM: the history read from the gateway, the live
// replies followed on the stream (per-turn seq and resync rules of /ws), and the messages this page
// sent that the history does not show yet; `items()` is what the log displays, in order.

/** One message of the history (GET …/conversations/{id}/messages). */
export interface Entry {
  id: string;
  direction: 'in' | 'out';
  text: string;
  status: string;
}

export interface Turn {
  text: string;
  seq: number;
  /** Part of the reply is missing (a gap in seq): wait for a resync, the final text or the history. */
  stale: boolean;
  state: 'running' | 'finished' | 'error';
  /** The turn's current text message (a new one is joined with a blank line). */
  messageId: string | null;
}

/** A message sent from this page: shown at once, replaced by its history entry later. */
export interface Local {
  clientId: string;
  text: string;
  messageId: string | null;
  note: string | null;
}

export interface Item {
  key: string;
  dir: 'in' | 'out';
  text: string;
  note: string | null;
  typing: boolean;
}

const UNANSWERED: Record<string, string> = {
  blocked: 'not answered',
  dead_lettered: 'no reply could be given',
  failed: 'no reply could be given',
  shed: 'not answered: too many messages',
};

export class Conversation {
  private history: Entry[] = [];
  private readonly turns = new Map<string, Turn>();
  readonly locals: Local[] = [];

  /** A fresh history: finished replies in it are final, and sent messages in it are no longer local. */
  setHistory(entries: Entry[]): void {
    this.history = entries;
    for (const e of entries) {
      if (e.direction === 'out') this.turns.delete(e.id);
      const local = this.locals.findIndex((l) => l.messageId === e.id);
      if (local >= 0) this.locals.splice(local, 1);
    }
  }

  turn(id: string): Turn {
    let t = this.turns.get(id);
    if (!t) {
      t = { text: '', seq: 0, stale: false, state: 'running', messageId: null };
      this.turns.set(id, t);
    }
    return t;
  }

  /** A resync snapshot: the reply so far up to its seq (after lagging, or when joining mid-reply). */
  resync(snap: { turnId: string; text?: string; seq?: number; status?: string }): void {
    const t = this.turn(snap.turnId);
    t.text = snap.text ?? '';
    t.seq = snap.seq ?? 0;
    t.stale = false;
    t.state = snap.status === 'finished' ? 'finished' : snap.status === 'error' ? 'error' : 'running';
  }

  /** A turn event (AG-UI); false when it was already applied. */
  apply(p: any): boolean {
    const t = this.turn(p.turnId);
    const seq = Number(p.seq);
    if (seq <= t.seq) return false; // already applied (a resync covered it)
    if (seq !== t.seq + 1) t.stale = true; // frames were missed: the text is incomplete
    t.seq = seq;
    switch (p.type) {
      case 'RUN_STARTED':
        t.state = 'running';
        break;
      case 'TEXT_MESSAGE_START':
        if (t.messageId !== null && t.messageId !== p.messageId && t.text) t.text += '\n\n';
        t.messageId = p.messageId;
        break;
      case 'TEXT_MESSAGE_CONTENT':
        if (!t.stale) t.text += String(p.delta ?? '');
        break;
      case 'RUN_FINISHED':
        t.text = String(p.result?.text ?? t.text);
        t.stale = false;
        t.state = 'finished';
        break;
      case 'RUN_ERROR':
        t.state = 'error';
        break;
      case 'CUSTOM':
        if (p.name === 'TURN_RESTARTED') {
          t.text = '';
          t.messageId = null;
        }
        break;
    }
    return true;
  }

  /** A message ended (message.status): the history has something this page does not show yet. */
  needsHistory(traceId: string): boolean {
    const t = this.turns.get(traceId);
    return !t || t.state === 'running' || t.stale;
  }

  items(welcome: string | null): Item[] {
    const items: Item[] = [];
    if (welcome) items.push({ key: 'welcome', dir: 'out', text: welcome, note: null, typing: false });
    const answered = new Set(this.history.filter((e) => e.direction === 'out').map((e) => e.id));
    const shown = new Set<string>();
    const liveReply = (id: string) => {
      const t = this.turns.get(id);
      if (!t || answered.has(id) || shown.has(`out:${id}`)) return;
      shown.add(`out:${id}`);
      const note = t.state === 'error' ? 'the reply failed' : null;
      items.push({ key: `out:${id}`, dir: 'out', text: t.text || '…', note, typing: !t.text && t.state === 'running' });
    };
    for (const e of this.history) {
      const key = `${e.direction}:${e.id}`;
      if (shown.has(key)) continue;
      shown.add(key);
      items.push({ key, dir: e.direction, text: e.text, note: UNANSWERED[e.status] ?? null, typing: false });
      if (e.direction === 'in') liveReply(e.id);
    }
    for (const l of this.locals) {
      const key = l.messageId ? `in:${l.messageId}` : `local:${l.clientId}`;
      if (shown.has(key)) continue;
      shown.add(key);
      items.push({ key, dir: 'in', text: l.text, note: l.note, typing: false });
      if (l.messageId) liveReply(l.messageId);
    }
    return items;
  }
}
