// Public API of the actor runtime. It knows nothing of channels, HTTP or SQL.

export { Backoff, type BackoffOptions, backoffDelay } from './backoff.ts';
export type { Clock, Timer } from './clock.ts';
export { realClock } from './clock.ts';
export { Mailbox, MailboxClosedError } from './mailbox.ts';
export {
  type Actor,
  type PassivateCause,
  type RestartPolicy,
  type StopReason,
  Supervisor,
  type SupervisorEvent,
  type SupervisorOptions,
  type SupervisorStats,
} from './supervisor.ts';
export { VirtualClock } from './virtual-clock.ts';
