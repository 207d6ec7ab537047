// Named crash points for the crash matrix: SWITCHBOARD_CRASH_AT=<point>:<n> makes the process
// SIGKILL itself at the n-th pass through <point>. Unset, a crash point is one boolean check.

export type CrashPointName =
  | 'after_inbox_commit' // inbox committed, webhook not yet answered
  | 'after_ack' // webhook answered
  | 'after_poll_ingest_before_offset' // a polled update is in the inbox, its offset not yet committed
  | 'after_media_before_agent' // a message's media fetched and stored, the agent not yet called
  | 'agent_before_first_delta'
  | 'agent_mid_stream'
  | 'after_agent_before_send'
  | 'after_send_before_outbox_commit'
  | 'mid_group_commit'
  | 'during_passivation'
  | 'status_before_event' // an instance status written, its event and webhook rows not yet
  | 'events_mid_write' // inside the event store's write transaction (events + webhook outbox rows)
  | 'webhook_after_response'; // a webhook receiver answered, the outcome not yet recorded

const spec = process.env.SWITCHBOARD_CRASH_AT;
const [armedPoint, armedCountRaw] = spec ? spec.split(':') : [];
const armedCount = Number(armedCountRaw ?? 1) || 1;
let passes = 0;

export function crashPoint(name: CrashPointName): void {
  if (armedPoint === undefined || name !== armedPoint) return;
  passes++;
  if (passes >= armedCount) {
    process.stderr.write(`switchboard: crash point ${name} reached (pass ${passes}); SIGKILL\n`);
    process.kill(process.pid, 'SIGKILL');
  }
}
