// Keyword gates, the access step's second half: an instance's triggers (a message must match one
// to reach the agent), stop/resume keywords and human takeover, read from the instance's settings.
// Here: the settings' shape, their validation and trigger matching; the access service applies them.

export type TriggerType = 'contains' | 'equals' | 'startsWith' | 'regex';
export interface Trigger {
  type: TriggerType;
  value: string;
}

export function asTriggers(v: unknown): Trigger[] {
  if (!Array.isArray(v)) return [];
  return v.filter(
    (t): t is Trigger =>
      !!t &&
      typeof t === 'object' &&
      ['contains', 'equals', 'startsWith', 'regex'].includes((t as Trigger).type) &&
      typeof (t as Trigger).value === 'string' &&
      (t as Trigger).value.length > 0,
  );
}

const regexCache = new Map<string, RegExp | null>();
function compiled(pattern: string): RegExp | null {
  let r = regexCache.get(pattern);
  if (r === undefined) {
    try {
      r = pattern.length <= 200 ? new RegExp(pattern, 'i') : null;
    } catch {
      r = null;
    }
    if (regexCache.size > 1000) regexCache.clear();
    regexCache.set(pattern, r);
  }
  return r;
}

export function triggerMatches(t: Trigger, text: string): boolean {
  const s = text.trim().toLowerCase();
  const v = t.value.trim().toLowerCase();
  switch (t.type) {
    case 'contains':
      return s.includes(v);
    case 'equals':
      return s === v;
    case 'startsWith':
      return s.startsWith(v);
    case 'regex':
      return compiled(t.value)?.test(text.slice(0, 4096)) ?? false;
  }
}

/** Problems with the access-related instance settings (for InstanceService validation). */
export function accessSettingsProblems(settings: Record<string, unknown>): Array<{ field: string; problem: string }> {
  const out: Array<{ field: string; problem: string }> = [];
  if (settings.triggers !== undefined && settings.triggers !== null) {
    const v = settings.triggers;
    if (!Array.isArray(v) || v.length > 50 || asTriggers(v).length !== v.length)
      out.push({
        field: 'settings.triggers',
        problem: 'must be a list (≤ 50) of {type: contains|equals|startsWith|regex, value}',
      });
    else
      for (const t of asTriggers(v))
        if (t.type === 'regex' && !compiled(t.value))
          out.push({ field: 'settings.triggers', problem: `invalid regex '${t.value.slice(0, 40)}'` });
  }
  for (const k of ['stopKeyword', 'resumeKeyword', 'stopReply']) {
    const v = settings[k];
    if (v !== undefined && v !== null && (typeof v !== 'string' || v.length > 4000 || !v.trim()))
      out.push({ field: `settings.${k}`, problem: 'must be a non-empty string or null' });
  }
  const m = settings.humanTakeoverMinutes;
  if (m !== undefined && m !== null && (!Number.isInteger(m) || (m as number) < 0 || (m as number) > 10_080))
    out.push({ field: 'settings.humanTakeoverMinutes', problem: 'must be an integer between 0 and 10080' });
  return out;
}
