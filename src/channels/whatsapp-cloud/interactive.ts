// Interactive replies (reply buttons, lists) from an agent. The agent's reply TEXT is then a JSON
// object instead of prose, so any agent protocol can produce one (a JSON agent answers
// {"text": "<that object as a string>"}); only this channel reads it, other channels would show it:
//
//   {"text": "Which size?", "buttons": [{"id": "s", "title": "Small"}, {"id": "l", "title": "Large"}],
//    "header"?: "…", "footer"?: "…"}
//   {"text": "Pick a time", "list": {"button": "Times", "sections": [{"title"?: "Today",
//    "rows": [{"id": "t10", "title": "10:00", "description"?: "…"}]}]}, "header"?: "…", "footer"?: "…"}
//
// The user's tap comes back as a message whose text is the title and whose extra.interactive holds
// the id. WhatsApp's limits apply (1–3 buttons, titles up to 20 characters; up to 10 list rows);
// a reply that names buttons or a list but breaks them fails without retry, with the reason.
import { ChannelError } from '../../core/errors.ts';

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

const LIMITS = {
  body: 1024,
  header: 60,
  footer: 60,
  buttons: 3,
  buttonTitle: 20,
  id: 256,
  listButton: 20,
  rows: 10,
  sections: 10,
  rowTitle: 24,
  rowDescription: 72,
  sectionTitle: 24,
};

function text(v: unknown, field: string, max: number, required = true): string | undefined {
  if (v === undefined && !required) return undefined;
  if (typeof v !== 'string' || !v.trim()) throw bad(`${field} must be a non-empty string`);
  if (v.length > max) throw bad(`${field} is longer than ${max} characters`);
  return v;
}

function bad(problem: string): ChannelError {
  return new ChannelError(`interactive reply not sent: ${problem}`, false);
}

/**
 * The Cloud API `interactive` object for a reply text that is an interactive reply, or null when
 * the text is ordinary prose (or JSON of another shape). Throws a non-retryable ChannelError when
 * the reply names buttons or a list but breaks WhatsApp's rules.
 */
export function interactiveOf(replyText: string): Obj | null {
  const raw = replyText.trim();
  if (!raw.startsWith('{') || !raw.endsWith('}')) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    return null;
  }
  if (!isObj(parsed) || (parsed.buttons === undefined && parsed.list === undefined)) return null;
  const r = parsed;
  const body = { text: text(r.text, 'text', LIMITS.body) };
  const header = text(r.header, 'header', LIMITS.header, false);
  const footer = text(r.footer, 'footer', LIMITS.footer, false);
  const frame = {
    ...(header ? { header: { type: 'text', text: header } } : {}),
    body,
    ...(footer ? { footer: { text: footer } } : {}),
  };
  if (r.buttons !== undefined) {
    if (r.list !== undefined) throw bad('give buttons or a list, not both');
    if (!Array.isArray(r.buttons) || r.buttons.length < 1 || r.buttons.length > LIMITS.buttons)
      throw bad(`buttons must be a list of 1 to ${LIMITS.buttons}`);
    const buttons = r.buttons.map((b, i) => {
      if (!isObj(b)) throw bad(`buttons[${i}] must be an object`);
      return {
        type: 'reply',
        reply: {
          id: text(b.id, `buttons[${i}].id`, LIMITS.id),
          title: text(b.title, `buttons[${i}].title`, LIMITS.buttonTitle),
        },
      };
    });
    return { type: 'button', ...frame, action: { buttons } };
  }
  const l = r.list;
  if (!isObj(l)) throw bad('list must be an object');
  const button = text(l.button, 'list.button', LIMITS.listButton);
  if (!Array.isArray(l.sections) || l.sections.length < 1 || l.sections.length > LIMITS.sections)
    throw bad(`list.sections must be a list of 1 to ${LIMITS.sections}`);
  let rowCount = 0;
  const several = l.sections.length > 1;
  const sections = l.sections.map((s, i) => {
    if (!isObj(s)) throw bad(`list.sections[${i}] must be an object`);
    if (!Array.isArray(s.rows) || s.rows.length < 1) throw bad(`list.sections[${i}].rows must not be empty`);
    rowCount += s.rows.length;
    const title = text(s.title, `list.sections[${i}].title`, LIMITS.sectionTitle, several);
    return {
      ...(title ? { title } : {}),
      rows: s.rows.map((row, j) => {
        const at = `list.sections[${i}].rows[${j}]`;
        if (!isObj(row)) throw bad(`${at} must be an object`);
        const description = text(row.description, `${at}.description`, LIMITS.rowDescription, false);
        return {
          id: text(row.id, `${at}.id`, LIMITS.id),
          title: text(row.title, `${at}.title`, LIMITS.rowTitle),
          ...(description ? { description } : {}),
        };
      }),
    };
  });
  if (rowCount > LIMITS.rows) throw bad(`a list has at most ${LIMITS.rows} rows in all`);
  return { type: 'list', ...frame, action: { button, sections } };
}
