// Loads a CommonJS bundle (the agent's dist/agent/*.cjs, scripts/build-agent.ts) and returns its
// exports, as require() would — but reads the file in 64 KiB pieces instead of in one buffer.
// require() reads a file into one malloc'd buffer that it grows by doubling (for the agent's
// ~0.9 MB bundle: 128 KiB, 256, 512, 1 MiB, each freed). glibc serves blocks that big with
// mmap, and freeing one raises its mmap threshold to that size for the rest of the process
// (mallopt(3), M_MMAP_THRESHOLD: "dynamic adjustment"): from then on every block up to 1 MiB —
// V8's compiler and parser buffers while the bundle is compiled, ~160 KiB each — comes from the
// main heap, whose freed pages glibc keeps. Measured at module level: malloc's heap 3.2 MiB with
// this loader, 6.3 with require() (docs/benchmarks.md, issue 10 round 22).
// Only public APIs: vm.compileFunction with CommonJS's five parameters. The bundle gets the
// caller's require (the bundles sit in one directory and require only node's built-ins):
// module.createRequire would load node's `module` built-in, and with it the ESM loader that the
// CommonJS build keeps out.
import { openSync, readSync, closeSync } from 'node:fs';
import { dirname } from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { compileFunction } from 'node:vm';
import { CrosslinkError } from './errors.ts';

/** Below glibc's initial mmap threshold (128 KiB), so reading never moves it. */
export const READ_PIECE_BYTES = 64 * 1024;

export class BundleLoadError extends CrosslinkError {
  override name = 'BundleLoadError';
  constructor(
    readonly file: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${file}: ${message}`, options);
  }
}

/** The file's text, read and UTF-8-decoded in READ_PIECE_BYTES pieces (a piece may split a character). */
export function readTextInPieces(file: string, pieceBytes: number = READ_PIECE_BYTES): string {
  const fd = openSync(file, 'r');
  try {
    const piece = Buffer.allocUnsafe(pieceBytes);
    const decoder = new StringDecoder('utf8');
    let text = '';
    for (let n = readSync(fd, piece, 0, pieceBytes, null); n > 0; n = readSync(fd, piece, 0, pieceBytes, null)) {
      text += decoder.write(piece.subarray(0, n));
    }
    return text + decoder.end();
  } finally {
    closeSync(fd);
  }
}

/**
 * Runs the CommonJS file at `file` (an absolute path) once and returns its module.exports; its
 * require() is `require`, which must resolve as it would from the file (a require of its directory).
 */
export function loadCommonJs(file: string, require: NodeJS.Require): unknown {
  let source: string;
  try {
    source = readTextInPieces(file);
  } catch (err) {
    throw new BundleLoadError(file, 'cannot read the bundle', { cause: err });
  }
  const wrapper = compileFunction(source, ['exports', 'require', 'module', '__filename', '__dirname'], { filename: file }) as (
    exports: unknown,
    require: NodeJS.Require,
    module: { exports: unknown },
    filename: string,
    dirname: string,
  ) => void;
  const module: { exports: unknown } = { exports: {} };
  wrapper.call(module.exports, module.exports, require, module, file, dirname(file));
  return module.exports;
}
