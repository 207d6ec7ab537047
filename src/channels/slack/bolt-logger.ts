// Bolt, the Web API client and the Socket Mode client log through @slack/logger's interface;
// this routes their lines into our pino logger instead of the console.
import { type Logger as BoltLogger, LogLevel } from '@slack/bolt';
import type { Logger } from 'pino';

export function boltLogger(log: Logger): BoltLogger {
  const child = log.child({ lib: 'slack' });
  let level: LogLevel = pinoToBolt(child.level);
  const line = (msg: unknown[]) =>
    msg.map((m) => (m instanceof Error ? m.message : typeof m === 'string' ? m : JSON.stringify(m))).join(' ');
  return {
    debug: (...msg) => child.debug(line(msg)),
    info: (...msg) => child.info(line(msg)),
    // Bolt logs an expected disconnect or a rejected event as warn/error; keep them but as ours.
    warn: (...msg) => child.warn(line(msg)),
    error: (...msg) => child.error(line(msg)),
    setLevel: (l) => {
      level = l;
    },
    getLevel: () => level,
    setName: () => {},
  };
}

function pinoToBolt(level: string): LogLevel {
  switch (level) {
    case 'trace':
    case 'debug':
      return LogLevel.DEBUG;
    case 'info':
      return LogLevel.INFO;
    case 'warn':
      return LogLevel.WARN;
    default:
      return LogLevel.ERROR;
  }
}
