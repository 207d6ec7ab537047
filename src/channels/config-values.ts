// Reading an instance's stored channel fields (v1 values may arrive as strings or numbers).

/** A non-blank string (a number is taken as its digits: ids often come as numbers), else null. */
export function configString(v: unknown): string | null {
  if (typeof v === 'number') return String(v);
  return typeof v === 'string' && v.trim() !== '' ? v.trim() : null;
}

/** A boolean, or its usual spellings as text; anything else is the default. */
export function configBool(v: unknown, dflt: boolean): boolean {
  if (typeof v === 'boolean') return v;
  if (typeof v === 'string') {
    if (/^(true|1|yes|on)$/i.test(v)) return true;
    if (/^(false|0|no|off)$/i.test(v)) return false;
  }
  return dflt;
}
