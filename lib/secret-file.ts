// Secret files (private keys) on disk: read only when no other user could read them, and created
// exclusively with mode 0600, so creators racing on one path (two agent starts, two coordinator
// replicas on a shared volume) end up with one key and no reader ever sees a half-written file.
// What the file holds (format, validation) is the caller's business.
import { randomBytes } from 'node:crypto';
import { link, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { CrosslinkError, errorMessage } from './errors.ts';

/** A secret file is unreadable, too open, malformed or cannot be created. Names the path and the fix. */
export class SecretFileError extends CrosslinkError {
  override name = 'SecretFileError';
  constructor(
    readonly path: string,
    problem: string,
    options?: { cause?: unknown },
  ) {
    super(`${path}: ${problem}`, options);
  }
}

export interface ReadSecretFileOptions {
  /** Appended to the "too open" message: where else the mode may come from (e.g. a Kubernetes Secret volume). */
  readonly modeHint?: string;
}

/** The file's text, or undefined when it does not exist. Refuses non-files and group/world permissions. */
export async function readSecretFile(path: string, options: ReadSecretFileOptions = {}): Promise<string | undefined> {
  let st;
  try {
    st = await stat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new SecretFileError(path, `cannot read: ${errorMessage(err)}`, { cause: err });
  }
  if (!st.isFile()) throw new SecretFileError(path, 'is not a regular file');
  if ((st.mode & 0o077) !== 0) {
    const octal = (st.mode & 0o777).toString(8).padStart(4, '0');
    const hint = options.modeHint === undefined ? '' : `; ${options.modeHint}`;
    throw new SecretFileError(path, `has mode ${octal}; a private key must not be readable by group or others (run: chmod 600 ${path})${hint}`);
  }
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new SecretFileError(path, `cannot read: ${errorMessage(err)}`, { cause: err });
  }
}

/**
 * Writes `contents` to a temp file created 0600 next to `path` and links it into place only if
 * `path` still doesn't exist. 'exists': someone else created it first; read theirs.
 */
export async function createSecretFileExclusive(path: string, contents: string): Promise<'created' | 'exists'> {
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    const fh = await open(tmp, 'wx', 0o600);
    try {
      await fh.writeFile(contents, 'utf8');
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      // link() fails if the target exists, unlike rename(): first writer wins.
      await link(tmp, path);
      return 'created';
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') return 'exists';
      if (code !== 'EPERM' && code !== 'ENOTSUP') throw err;
      // Filesystems without hard links: fall back to rename (still atomic, last writer wins).
      await rename(tmp, path);
      return 'created';
    }
  } catch (err) {
    throw new SecretFileError(path, `cannot create: ${errorMessage(err)}`, { cause: err });
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}
