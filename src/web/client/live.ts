// One WebSocket per tab to /ws, subscribed to instance and conversation events; pages add
// listeners while they are shown. Browsers cannot set headers on a WebSocket, so the key goes in
// ?apiKey=. Reconnects with backoff; a 4401 close means the key was refused.

export type LiveFrame = { type: string; channel?: string; payload?: any; snapshot?: any };
type Listener = (frame: LiveFrame) => void;

const listeners = new Set<Listener>();
let socket: WebSocket | null = null;
let key: string | null = null;
let retryMs = 500;
let retryTimer: ReturnType<typeof setTimeout> | null = null;
let state: 'connecting' | 'live' | 'offline' | 'refused' = 'offline';
const stateListeners = new Set<(s: typeof state) => void>();

function setState(s: typeof state) {
  state = s;
  for (const l of stateListeners) l(s);
}

export function onLiveState(fn: (s: typeof state) => void): void {
  stateListeners.add(fn);
  fn(state);
}

export function connectLive(apiKey: string): void {
  disconnectLive();
  key = apiKey;
  open();
}

export function disconnectLive(): void {
  key = null;
  if (retryTimer) clearTimeout(retryTimer);
  retryTimer = null;
  const s = socket;
  socket = null;
  s?.close();
  setState('offline');
}

function open() {
  if (!key) return;
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws?apiKey=${encodeURIComponent(key)}`;
  const ws = new WebSocket(url);
  socket = ws;
  setState('connecting');
  ws.onopen = () => {
    retryMs = 500;
    ws.send(JSON.stringify({ type: 'subscribe', channels: ['instances', 'conversations'] }));
  };
  ws.onmessage = (ev) => {
    let frame: LiveFrame;
    try {
      frame = JSON.parse(String(ev.data));
    } catch {
      return;
    }
    if (frame.type === 'subscribed') setState('live');
    for (const l of [...listeners]) {
      try {
        l(frame);
      } catch (err) {
        console.error('live listener failed', err);
      }
    }
  };
  ws.onclose = (ev) => {
    if (socket !== ws) return;
    socket = null;
    if (ev.code === 4401) return setState('refused');
    setState('offline');
    retryTimer = setTimeout(open, retryMs);
    retryMs = Math.min(retryMs * 2, 15_000);
  };
}

/** Adds a listener; returns its remover. */
export function listen(fn: Listener): () => void {
  listeners.add(fn);
  return () => listeners.delete(fn);
}
