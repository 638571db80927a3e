// The coordinator's public key as a file (what `crosslink-coordinator public-key` prints): read by
// the agent (--coordinator-key-file) and by the CLI's direct KV read alike.
import { readFile } from 'node:fs/promises';
import { SecretFileError } from '../lib/secret-file.ts';
import { Key32 } from './messages.ts';

/** The coordinator's public key from a file (the output of `crosslink-coordinator public-key`). */
export async function readCoordinatorKeyFile(path: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new SecretFileError(path, `cannot read the coordinator key: ${(err as Error).message}`, { cause: err });
  }
  // Tolerate comments and blank lines around the key.
  const line = text
    .split('\n')
    .map((l) => l.trim())
    .find((l) => l !== '' && !l.startsWith('#'));
  if (line === undefined || !Key32.safeParse(line).success) {
    throw new SecretFileError(path, `does not hold a coordinator public key (expected a base64 Ed25519 public key, 44 characters, as \`crosslink-coordinator public-key\` prints); got ${JSON.stringify((line ?? '').slice(0, 60))}`);
  }
  return line;
}
