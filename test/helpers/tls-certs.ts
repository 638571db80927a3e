// Throwaway certificates made with openssl for tests: a CA, a server certificate for 127.0.0.1 and
// localhost, and client certificates (clientAuth). Files land in `dir` as <name>.pem / <name>.key.
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

async function openssl(dir: string, ...args: string[]): Promise<void> {
  await run('openssl', args, { cwd: dir, timeout: 30_000 });
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/** A self-signed CA: `${name}.pem`, `${name}.key`. */
export async function makeCa(dir: string, name = 'ca'): Promise<void> {
  await openssl(dir, 'req', '-x509', ...EC, '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '1', '-subj', `/CN=xl-test-${name}`);
}

/** A certificate signed by `ca`: usage 'server' (SANs 127.0.0.1, localhost) or 'client'. */
export async function makeCert(dir: string, name: string, usage: 'server' | 'client', ca = 'ca'): Promise<void> {
  const ext = usage === 'server' ? 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' : 'extendedKeyUsage=clientAuth\n';
  await writeFile(join(dir, `${name}.ext`), ext);
  await openssl(dir, 'req', ...EC, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=xl-test-${name}`);
  await openssl(dir, 'x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.pem`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-out', `${name}.pem`, '-days', '1', '-extfile', `${name}.ext`);
}

/** ca, server and client, as test/nats-auth.test.ts uses them. */
export async function makeCerts(dir: string): Promise<void> {
  await makeCa(dir);
  await makeCert(dir, 'server', 'server');
  await makeCert(dir, 'client', 'client');
}
