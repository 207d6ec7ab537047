// The layering rules, read from the source files: src/core (domain types and errors) imports
// nothing of the project, and only the HTTP layer (src/api, src/mcp, src/server.ts, src/main.ts) imports
// from src/api — services, actors, channels, cluster, agents, stream and db throw core errors and
// never know about HTTP. Route modules declare the dependencies they use (src/server.ts passes the
// gateway, which satisfies each) and do not import the gateway.
import { describe, expect, test } from 'bun:test';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';

const ROOT = join(import.meta.dir, '..', '..');
const SOURCE_DIRS = ['src', 'actors', 'db'];
// src/mcp is the MCP endpoint: another HTTP surface over the same services, rendering the same envelope.
const HTTP_LAYER = (file: string) =>
  file.startsWith('src/api/') || file.startsWith('src/mcp/') || file === 'src/server.ts' || file === 'src/main.ts';

/** Every .ts file of the project's source, as a path relative to the repository root. */
function sourceFiles(): string[] {
  return SOURCE_DIRS.flatMap((dir) =>
    readdirSync(join(ROOT, dir), { recursive: true, encoding: 'utf8' })
      .filter((f) => f.endsWith('.ts') && !f.includes('node_modules'))
      .map((f) => `${dir}/${f.replaceAll('\\', '/')}`),
  );
}

/** The module specifiers a file imports or re-exports (static, side-effect and dynamic forms). */
function specifiers(source: string): string[] {
  const out: string[] = [];
  const patterns = [/\b(?:import|export)\s[^'";]*?\sfrom\s*['"]([^'"]+)['"]/g, /\bimport\s*\(?\s*['"]([^'"]+)['"]/g];
  for (const re of patterns) for (const m of source.matchAll(re)) out.push(m[1]);
  return out;
}

/** A file's imports of project files, as repository-relative paths (packages are left out). */
function projectImports(file: string): string[] {
  const text = readFileSync(join(ROOT, file), 'utf8');
  return specifiers(text)
    .filter((s) => s.startsWith('.'))
    .map((s) => relative(ROOT, normalize(join(ROOT, dirname(file), s))).replaceAll('\\', '/'));
}

describe('layers', () => {
  const files = sourceFiles();

  test('the import reader sees every form of import', () => {
    const src = [
      "import { a } from './a.ts';",
      "import type { B } from '../b.ts';",
      "import {\n  c,\n  type D,\n} from './c.ts';",
      "export { e } from './e.ts';",
      "export type { F } from './f.ts';",
      "export * from './g.ts';",
      "import './h.ts';",
      "const i = await import('./i.ts');",
    ].join('\n');
    expect(specifiers(src).sort()).toEqual(
      ['./a.ts', '../b.ts', './c.ts', './e.ts', './f.ts', './g.ts', './h.ts', './i.ts'].sort(),
    );
    // And on the real tree: the server does import the API layer.
    expect(projectImports('src/server.ts')).toContain('src/api/errors.ts');
  });

  test('src/core imports nothing of the project', () => {
    const core = files.filter((f) => f.startsWith('src/core/'));
    expect(core.length).toBeGreaterThan(0);
    const offending = core.flatMap((f) =>
      projectImports(f)
        .filter((target) => !target.startsWith('src/core/'))
        .map((target) => `${f} → ${target}`),
    );
    expect(offending).toEqual([]);
  });

  test('only src/api, src/mcp, src/server.ts and src/main.ts import from src/api', () => {
    const offending = files
      .filter((f) => !HTTP_LAYER(f))
      .flatMap((f) =>
        projectImports(f)
          .filter((target) => target.startsWith('src/api/'))
          .map((target) => `${f} → ${target}`),
      );
    expect(offending).toEqual([]);
  });

  test('HTTP surfaces take the dependencies they use: nothing in src/api, src/mcp or src/web imports src/gateway.ts', () => {
    const surfaces = files.filter((f) => /^src\/(api|mcp|web)\//.test(f));
    for (const dir of ['src/api/', 'src/mcp/', 'src/web/']) expect(surfaces.some((f) => f.startsWith(dir))).toBe(true);
    expect(surfaces.filter((f) => projectImports(f).includes('src/gateway.ts'))).toEqual([]);
  });
});
