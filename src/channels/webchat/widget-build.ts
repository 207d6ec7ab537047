// /webchat.js: the widget (widget/main.ts, plain TypeScript and the DOM) bundled by Bun.build on
// the first request and kept in memory, as the console is. A failed build must not take the
// gateway down: the script then answers 500 with a comment saying why.
import { join } from 'node:path';
import type { Logger } from 'pino';

const ENTRY = join(import.meta.dir, 'widget', 'main.ts');

let building: Promise<string> | null = null;

async function build(entry: string): Promise<string> {
  const result = await Bun.build({ entrypoints: [entry], target: 'browser', format: 'iife', minify: true });
  if (!result.success) throw new Error(result.logs.map(String).join('\n') || 'build failed');
  const js = result.outputs.find((o) => o.kind === 'entry-point');
  if (!js) throw new Error('build produced no script');
  return js.text();
}

/** The bundled widget, or a script that is only a comment starting "/*build failed". */
export async function widgetScript(log: Logger, entry = ENTRY): Promise<string> {
  building ??= build(entry).catch((err: unknown) => {
    const errors = (err as { errors?: unknown[] }).errors;
    const message = errors?.length ? errors.map(String).join('\n') : String((err as Error)?.message ?? err);
    log.error({ err: message }, 'web chat widget build failed');
    building = null; // try again on the next request
    return `/*build failed: ${message.replace(/\*\//g, '* /')} */`;
  });
  return building;
}
