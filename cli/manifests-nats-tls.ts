// `crosslink manifests --nats-tls-secret` / `--nats-tls-cert-file` …: the agents' NATS TLS client
// certificate as part of what operators apply. The DaemonSet mounts a Secret in the layout
// cert-manager and `kubectl create secret tls` write (tls.crt, tls.key, optional ca.crt) and points
// CROSSLINK_NATS_TLS_CERT/KEY/CA at it; with the files given, the Secret itself is rendered too.
// A NATS server with `tls { verify: true }` then admits exactly the agents holding such a certificate.
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isMap, isSeq, stringify, type Document, type YAMLMap } from 'yaml';
import { ValidationError, errorMessage } from '../lib/errors.ts';

/** The Secret name when only the files are given (`--nats-tls-secret` overrides it). */
export const DEFAULT_NATS_TLS_SECRET = 'crosslink-nats-client-tls';
/** Where the DaemonSet mounts it; the env vars the agent reads (lib/nats-connect.ts NATS_AUTH_FLAGS). */
export const NATS_TLS_MOUNT = '/etc/crosslink/nats-tls';
export const NATS_TLS_VOLUME = 'nats-client-tls';
export const NATS_TLS_ENV = Object.freeze({ cert: 'CROSSLINK_NATS_TLS_CERT', key: 'CROSSLINK_NATS_TLS_KEY', ca: 'CROSSLINK_NATS_TLS_CA' });
/** Keys inside the Secret (kubernetes.io/tls; cert-manager adds ca.crt). */
export const NATS_TLS_KEYS = Object.freeze({ cert: 'tls.crt', key: 'tls.key', ca: 'ca.crt' });

export const NATS_TLS_FLAGS = Object.freeze({
  secret: '--nats-tls-secret',
  certFile: '--nats-tls-cert-file',
  keyFile: '--nats-tls-key-file',
  caFile: '--nats-tls-ca-file',
});

export interface NatsTlsValues {
  /** The Secret the DaemonSet mounts. */
  readonly secret: string;
  /** PEM texts to render the Secret from; null: the Secret exists already (cert-manager, kubectl). */
  readonly files: { readonly cert: string; readonly key: string; readonly ca: string | null } | null;
  /** Whether the Secret holds ca.crt (then CROSSLINK_NATS_TLS_CA points at it). */
  readonly withCa: boolean;
}

export interface NatsTlsInput {
  readonly natsTlsSecret?: string | undefined;
  readonly natsTlsCertFile?: string | undefined;
  readonly natsTlsKeyFile?: string | undefined;
  readonly natsTlsCaFile?: string | undefined;
}

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

function readPem(flag: string, path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new ValidationError(flag, path, `cannot read: ${errorMessage(err)}`, { cause: err });
  }
}

function certificate(flag: string, path: string, text: string): X509Certificate {
  try {
    return new X509Certificate(text);
  } catch (err) {
    throw new ValidationError(flag, path, `must be a PEM certificate (${errorMessage(err)})`, { cause: err });
  }
}

/** Validates the TLS client options once (null: none given). Errors name the flag, the value and what is allowed. */
export function parseNatsTlsValues(input: NatsTlsInput): NatsTlsValues | null {
  const { natsTlsSecret: secret, natsTlsCertFile: certFile, natsTlsKeyFile: keyFile, natsTlsCaFile: caFile } = input;
  if (secret === undefined && certFile === undefined && keyFile === undefined && caFile === undefined) return null;
  if (secret !== undefined && (secret.length > 253 || !DNS_SUBDOMAIN.test(secret))) {
    throw new ValidationError(NATS_TLS_FLAGS.secret, secret, 'must be a Secret name (lowercase DNS subdomain, at most 253 characters)');
  }
  if ((certFile === undefined) !== (keyFile === undefined)) {
    const missing = certFile === undefined ? NATS_TLS_FLAGS.certFile : NATS_TLS_FLAGS.keyFile;
    throw new ValidationError(missing, undefined, `required with ${certFile === undefined ? NATS_TLS_FLAGS.keyFile : NATS_TLS_FLAGS.certFile}: a client certificate needs both the certificate and its key`);
  }
  if (certFile === undefined || keyFile === undefined) {
    if (caFile !== undefined) throw new ValidationError(NATS_TLS_FLAGS.caFile, caFile, `only with ${NATS_TLS_FLAGS.certFile} and ${NATS_TLS_FLAGS.keyFile} (an existing Secret carries its own ca.crt)`);
    // An existing Secret: in cert-manager's layout (tls.crt, tls.key, ca.crt).
    return Object.freeze({ secret: secret ?? DEFAULT_NATS_TLS_SECRET, files: null, withCa: true });
  }
  const certText = readPem(NATS_TLS_FLAGS.certFile, certFile);
  const keyText = readPem(NATS_TLS_FLAGS.keyFile, keyFile);
  const cert = certificate(NATS_TLS_FLAGS.certFile, certFile, certText);
  let key;
  try {
    key = createPrivateKey(keyText);
  } catch (err) {
    throw new ValidationError(NATS_TLS_FLAGS.keyFile, keyFile, `must be an unencrypted PEM private key (${errorMessage(err)})`, { cause: err });
  }
  if (!cert.checkPrivateKey(key)) throw new ValidationError(NATS_TLS_FLAGS.keyFile, keyFile, `is not the private key of ${certFile} (${cert.subject.replace(/\n/g, ', ')})`);
  if (cert.keyUsage !== undefined && !cert.keyUsage.includes('1.3.6.1.5.5.7.3.2')) {
    throw new ValidationError(NATS_TLS_FLAGS.certFile, certFile, `is not valid for TLS client authentication (extended key usage ${cert.keyUsage.join(', ')}; needs clientAuth)`);
  }
  if (Date.parse(cert.validTo) < Date.now()) throw new ValidationError(NATS_TLS_FLAGS.certFile, certFile, `expired on ${cert.validTo}`);
  let ca: string | null = null;
  if (caFile !== undefined) {
    ca = readPem(NATS_TLS_FLAGS.caFile, caFile);
    certificate(NATS_TLS_FLAGS.caFile, caFile, ca);
  }
  return Object.freeze({ secret: secret ?? DEFAULT_NATS_TLS_SECRET, files: Object.freeze({ cert: certText, key: keyText, ca }), withCa: ca !== null });
}

function setEnv(doc: Document, container: YAMLMap, name: string, value: string): void {
  const list = container.get('env');
  if (!isSeq(list)) throw new Error('DaemonSet container has no env list');
  const existing = list.items.find((i) => isMap(i) && i.get('name') === name);
  if (isMap(existing)) existing.set('value', value);
  else list.add(doc.createNode({ name, value }));
}

/** Mounts the Secret into every container of the DaemonSet document and sets the agent's TLS env vars. */
export function applyNatsTls(doc: Document, tls: NatsTlsValues): void {
  const containers = doc.getIn(['spec', 'template', 'spec', 'containers']);
  const volumes = doc.getIn(['spec', 'template', 'spec', 'volumes']);
  if (!isSeq(containers) || !isSeq(volumes)) throw new Error('DaemonSet template has no containers or volumes');
  for (const container of containers.items) {
    if (!isMap(container)) continue;
    setEnv(doc, container, NATS_TLS_ENV.cert, `${NATS_TLS_MOUNT}/${NATS_TLS_KEYS.cert}`);
    setEnv(doc, container, NATS_TLS_ENV.key, `${NATS_TLS_MOUNT}/${NATS_TLS_KEYS.key}`);
    if (tls.withCa) setEnv(doc, container, NATS_TLS_ENV.ca, `${NATS_TLS_MOUNT}/${NATS_TLS_KEYS.ca}`);
    const mounts = container.get('volumeMounts');
    if (!isSeq(mounts)) throw new Error('DaemonSet container has no volumeMounts');
    mounts.add(doc.createNode({ name: NATS_TLS_VOLUME, mountPath: NATS_TLS_MOUNT, readOnly: true }));
  }
  const items = [
    { key: NATS_TLS_KEYS.cert, path: NATS_TLS_KEYS.cert },
    { key: NATS_TLS_KEYS.key, path: NATS_TLS_KEYS.key },
    ...(tls.withCa ? [{ key: NATS_TLS_KEYS.ca, path: NATS_TLS_KEYS.ca }] : []),
  ];
  // 0400 like the other secrets. An existing Secret must hold ca.crt (cert-manager's always does; a Secret
  // without it leaves the pod in ContainerCreating with the kubelet naming the missing key).
  volumes.add(doc.createNode({ name: NATS_TLS_VOLUME, secret: { secretName: tls.secret, defaultMode: 0o400, items } }));
}

/** The Secret from the given files (type kubernetes.io/tls; a secret: keep the rendered file private). */
export function natsTlsSecret(tls: NatsTlsValues): string | null {
  if (tls.files === null) return null;
  return stringify({
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: tls.secret, namespace: 'crosslink-system', labels: { 'app.kubernetes.io/part-of': 'crosslink' } },
    type: 'kubernetes.io/tls',
    stringData: { [NATS_TLS_KEYS.cert]: tls.files.cert, [NATS_TLS_KEYS.key]: tls.files.key, ...(tls.files.ca !== null ? { [NATS_TLS_KEYS.ca]: tls.files.ca } : {}) },
  });
}
