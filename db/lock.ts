// One process per database: an exclusive flock(2) on `<database>.lock`, held through an open file
// descriptor for the life of the process. The kernel drops it when the process ends in any way,
// kill -9 included, so there is no stale lock file to clean up. flock is called through Bun's FFI
// into the C library the runtime already links (no package: the npm lock packages either write
// lock directories that outlive a kill -9 or need a native build).
import { dlopen, FFIType } from 'bun:ffi';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';

const LOCK_EX = 2;
const LOCK_NB = 4;

/** The database is already held by another process. */
export class DatabaseLocked extends Error {}

export interface DatabaseLock {
  path: string;
  release(): void;
}

let libc: { flock: (fd: number, op: number) => number } | null | undefined;

function flockFn(): ((fd: number, op: number) => number) | null {
  if (libc !== undefined) return libc?.flock ?? null;
  const name = process.platform === 'darwin' ? 'libc.dylib' : process.platform === 'linux' ? 'libc.so.6' : null;
  if (!name) return (libc = null);
  const lib = dlopen(name, { flock: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 } });
  libc = { flock: lib.symbols.flock };
  return libc.flock;
}

/**
 * Takes the lock for `databasePath` or throws DatabaseLocked. Returns null for `:memory:` and on
 * platforms without flock (Windows), where nothing is locked.
 */
export function lockDatabase(databasePath: string): DatabaseLock | null {
  if (databasePath === ':memory:') return null;
  const flock = flockFn();
  if (!flock) return null;
  const path = `${databasePath}.lock`;
  mkdirSync(dirname(path), { recursive: true });
  const fd = openSync(path, 'a', 0o600);
  if (flock(fd, LOCK_EX | LOCK_NB) !== 0) {
    closeSync(fd);
    throw new DatabaseLocked(
      `database ${databasePath} is in use by another switchboard process (lock ${path}); run one process per DATABASE_PATH`,
    );
  }
  return {
    path,
    // Closing the descriptor releases the lock.
    release: () => closeSync(fd),
  };
}
