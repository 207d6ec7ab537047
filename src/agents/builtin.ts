// Built-in agents that need no outside service, so a fresh gateway can answer at once:
// - `echo` answers with the message, streamed word by word (streaming is visible in a demo);
// - `script` answers from ordered pattern → reply rules in the instance's agent config.
// Both run in-process behind the AgentClient interface; the conversation actor traces them like
// any agent. Delays go through the Clock, so tests drive them with the virtual clock.
import type { Clock } from '../../actors/runtime/clock.ts';
import type { AgentScript } from '../core/instance.ts';
import type { AgentClient, AgentEvent, AgentRequest } from './types.ts';

/** Pause between words; a long reply is spread over at most STREAM_BUDGET_MS instead. */
export const WORD_DELAY_MS = 60;
const STREAM_BUDGET_MS = 3_000;
/** Said by `script` when no rule matches and the config has no fallback. */
export const DEFAULT_FALLBACK = "Sorry, I don't have an answer for that.";

const MAX_RULES = 100;
const MAX_PATTERN = 500;
const MAX_REPLY = 4_000;

/** Words with the whitespace that follows each, so the deltas join back to the exact text. */
export function words(text: string): string[] {
  return text.match(/\s*\S+\s*/g) ?? (text ? [text] : []);
}

/** Streams `text` as one delta per word, then the final text. */
async function* streamWords(text: string, clock: Clock, signal: AbortSignal): AsyncGenerator<AgentEvent> {
  yield { type: 'start' };
  const parts = words(text);
  const delay = parts.length > 1 ? Math.min(WORD_DELAY_MS, STREAM_BUDGET_MS / parts.length) : 0;
  for (let i = 0; i < parts.length; i++) {
    if (i > 0 && delay > 0) {
      try {
        await clock.sleep(delay, signal);
      } catch {
        yield { type: 'error', message: 'agent call aborted by the caller', retryable: false };
        return;
      }
    }
    yield { type: 'delta', text: parts[i] };
  }
  yield { type: 'final', text };
}

export class EchoAgentClient implements AgentClient {
  constructor(private readonly clock: Clock) {}

  run(req: AgentRequest, signal: AbortSignal): AsyncIterable<AgentEvent> {
    // A message without text (a photo, a sticker) still gets an answer.
    return streamWords(req.message.trim() ? req.message : '(no text)', this.clock, signal);
  }
}

interface CompiledRule {
  re: RegExp;
  reply: string;
}

/** `$&` is the whole match, `$1`…`$9` its groups (an unmatched group is empty). */
function expand(reply: string, m: RegExpExecArray): string {
  return reply.replace(/\$(&|[1-9])/g, (_, g: string) => (g === '&' ? m[0] : (m[Number(g)] ?? '')));
}

export class ScriptAgentClient implements AgentClient {
  private readonly rules: CompiledRule[];
  private readonly fallback: string;

  constructor(
    script: AgentScript | null | undefined,
    private readonly clock: Clock,
  ) {
    // Validated on write (scriptProblems); a rule that still fails to compile is skipped.
    this.rules = (script?.rules ?? []).flatMap((r) => {
      try {
        return [{ re: new RegExp(r.pattern, 'iu'), reply: r.reply }];
      } catch {
        return [];
      }
    });
    this.fallback = script?.fallback ?? DEFAULT_FALLBACK;
  }

  /** The reply for a message: the first matching rule's, else the fallback. */
  replyTo(message: string): string {
    for (const rule of this.rules) {
      const m = rule.re.exec(message);
      if (m) return expand(rule.reply, m);
    }
    return this.fallback;
  }

  run(req: AgentRequest, signal: AbortSignal): AsyncIterable<AgentEvent> {
    const reply = this.replyTo(req.message);
    if (!reply.trim()) {
      return (async function* (): AsyncGenerator<AgentEvent> {
        yield { type: 'error', message: 'script agent: the matching reply is empty', retryable: false };
      })();
    }
    return streamWords(reply, this.clock, signal);
  }
}

/** Problems of a `script` config, each naming its field (agent.script.rules.N.pattern, …). */
export function scriptProblems(script: unknown): Array<{ field: string; problem: string }> {
  const f = 'agent.script';
  if (script === null) return [];
  if (typeof script !== 'object' || Array.isArray(script))
    return [{ field: f, problem: 'must be an object {rules: [{pattern, reply}], fallback?}' }];
  const s = script as Record<string, unknown>;
  const out: Array<{ field: string; problem: string }> = [];
  for (const k of Object.keys(s))
    if (k !== 'rules' && k !== 'fallback') out.push({ field: `${f}.${k}`, problem: 'is not a script field' });
  if (!Array.isArray(s.rules) || s.rules.length > MAX_RULES) {
    out.push({ field: `${f}.rules`, problem: `must be a list of at most ${MAX_RULES} rules` });
    return out;
  }
  s.rules.forEach((r: unknown, i: number) => {
    const at = `${f}.rules.${i}`;
    if (typeof r !== 'object' || r === null || Array.isArray(r)) {
      out.push({ field: at, problem: 'must be an object {pattern, reply}' });
      return;
    }
    const { pattern, reply, ...rest } = r as Record<string, unknown>;
    for (const k of Object.keys(rest)) out.push({ field: `${at}.${k}`, problem: 'is not a rule field' });
    if (typeof pattern !== 'string' || pattern === '' || pattern.length > MAX_PATTERN)
      out.push({ field: `${at}.pattern`, problem: `must be a regular expression (1–${MAX_PATTERN} characters)` });
    else {
      try {
        new RegExp(pattern, 'iu');
      } catch (err) {
        out.push({ field: `${at}.pattern`, problem: `is not a valid regular expression: ${(err as Error).message}` });
      }
    }
    if (typeof reply !== 'string' || !reply.trim() || reply.length > MAX_REPLY)
      out.push({ field: `${at}.reply`, problem: `must be a non-blank string (≤ ${MAX_REPLY} characters)` });
  });
  if (s.fallback !== undefined && s.fallback !== null && (typeof s.fallback !== 'string' || !s.fallback.trim()))
    out.push({ field: `${f}.fallback`, problem: `must be a non-blank string (≤ ${MAX_REPLY} characters) or null` });
  else if (typeof s.fallback === 'string' && s.fallback.length > MAX_REPLY)
    out.push({ field: `${f}.fallback`, problem: `must be a non-blank string (≤ ${MAX_REPLY} characters) or null` });
  return out;
}
