// Public API of the actor runtime. It knows nothing of channels, HTTP or SQL.
export type { Clock, Timer } from './clock.ts';
export { realClock } from './clock.ts';
export { VirtualClock } from './virtual-clock.ts';
export { backoffDelay, Backoff, type BackoffOptions } from './backoff.ts';
export { Mailbox, MailboxClosedError } from './mailbox.ts';
export {
  Supervisor,
  type Actor,
  type StopReason,
  type RestartPolicy,
  type PassivateCause,
  type SupervisorEvent,
  type SupervisorOptions,
  type SupervisorStats,
} from './supervisor.ts';
