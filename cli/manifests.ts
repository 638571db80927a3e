// `crosslink manifests`: renders the per-cluster agent manifests from the templates in deploy/agent/
// with one cluster's values. The templates stay plain, valid YAML; rendering edits the parsed documents
// (not text), so comments survive and a value can never break the YAML.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { isMap, isSeq, parseAllDocuments, stringify, type Document } from 'yaml';
import * as z from 'zod';
import { ValidationError } from '../lib/errors.ts';
import { packagePath } from '../lib/package-root.ts';
import { ClusterName, Key32, LocationName, Topology } from '../protocol/messages.ts';
import { JoinCredentialFile } from '../protocol/join-credential.ts';
import { NatsUrl } from '../lib/nats-url.ts';
import { NATS_TLS_FLAGS, applyNatsTls, natsTlsSecret, parseNatsTlsValues, type NatsTlsInput, type NatsTlsValues } from './manifests-nats-tls.ts';

export const DEPLOY_DIR = packagePath('deploy') + '/';

/** Agent templates in apply order (the namespace first, the CRDs before anything uses them). */
export const AGENT_TEMPLATES = ['namespace.yaml', 'mcs-crds.yaml', 'rbac.yaml', 'daemonset.yaml'] as const;

/** With --monitoring (prometheus-operator CRDs): the agents' PodMonitor and the alerts, from deploy/monitoring/. */
export const MONITORING_FILE = 'monitoring.yaml';

export const IMAGE_REPOSITORY = 'ghcr.io/crosslink/crosslink';

export function packageVersion(): string {
  const pkg: unknown = JSON.parse(readFileSync(packagePath('package.json'), 'utf8'));
  return z.object({ version: z.string() }).parse(pkg).version;
}

export function defaultImage(): string {
  return `${IMAGE_REPOSITORY}:${packageVersion()}`;
}

const IMAGE_REF = /^[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]{1,5})?(?:\/[a-z0-9]+(?:[._-][a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$/;

/** Flag name for each value, so errors say what to fix. */
const FLAGS = {
  cluster: '--cluster',
  location: '--location',
  natsUrl: '--nats-url',
  image: '--image',
  topology: '--topology',
  coordinatorKey: '--coordinator-key',
  monitoring: '--monitoring',
  joinCredentialFile: '--join-credential-file',
  natsTlsSecret: NATS_TLS_FLAGS.secret,
  natsTlsCertFile: NATS_TLS_FLAGS.certFile,
  natsTlsKeyFile: NATS_TLS_FLAGS.keyFile,
  natsTlsCaFile: NATS_TLS_FLAGS.caFile,
} as const;

/** The Secret the DaemonSet mounts the join credential from (deploy/agent/daemonset.yaml). */
export const JOIN_CREDENTIAL_SECRET = 'crosslink-join-credential';
export const JOIN_CREDENTIAL_KEY = 'join-credential.json';

const ValuesSchema = z
  .object({
    cluster: ClusterName,
    location: LocationName,
    natsUrl: z
      .string()
      .transform((s) => s.split(',').map((u) => u.trim()).filter((u) => u !== ''))
      .pipe(z.array(NatsUrl).min(1, 'needs at least one NATS URL, e.g. tls://nats.example.com:4222')),
    image: z.string().regex(IMAGE_REF, 'must be an image reference like ghcr.io/crosslink/crosslink:0.1.0').optional(),
    topology: Topology.optional(),
    coordinatorKey: Key32.optional(),
    monitoring: z.boolean().optional(),
    joinCredentialFile: z.string().min(1, 'must be a file path').optional(),
    natsTlsSecret: z.string().optional(),
    natsTlsCertFile: z.string().min(1, 'must be a file path').optional(),
    natsTlsKeyFile: z.string().min(1, 'must be a file path').optional(),
    natsTlsCaFile: z.string().min(1, 'must be a file path').optional(),
  })
  .strict();

export interface ManifestValues {
  readonly cluster: string;
  readonly location: string;
  readonly natsUrls: readonly string[];
  readonly image: string;
  readonly topology: Topology;
  /** When set, the crosslink-coordinator ConfigMap is rendered too; else you create it (docs/kubernetes.md). */
  readonly coordinatorKey: string | null;
  /** Also render the agents' PodMonitor and the PrometheusRule (deploy/monitoring/; needs prometheus-operator). */
  readonly monitoring: boolean;
  /** The join credential file's text (validated: this cluster's); rendered as a Secret. null: you create the Secret. */
  readonly joinCredential: string | null;
  /** The agents' NATS TLS client certificate (manifests-nats-tls.ts); null: none mounted. */
  readonly natsTls: NatsTlsValues | null;
}

export interface ManifestInput extends NatsTlsInput {
  readonly cluster?: string | undefined;
  readonly location?: string | undefined;
  readonly natsUrl?: string | undefined;
  readonly image?: string | undefined;
  readonly topology?: string | undefined;
  readonly coordinatorKey?: string | undefined;
  readonly monitoring?: boolean | undefined;
  readonly joinCredentialFile?: string | undefined;
}

/** Reads and checks a join credential file for the cluster (the agent checks it the same way at start). */
function readJoinCredential(path: string, cluster: string): string {
  const flag = FLAGS.joinCredentialFile;
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ValidationError(flag, path, `cannot read: ${(err as Error).message}`, { cause: err });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new ValidationError(flag, path, 'must be a join credential file written by `crosslink-coordinator cluster add --credential-out` (not JSON)', { cause: err });
  }
  const r = JoinCredentialFile.safeParse(parsed);
  if (!r.success) throw new ValidationError(flag, path, `must be a join credential file written by \`crosslink-coordinator cluster add --credential-out\` (${r.error.issues[0]?.message ?? 'invalid'})`, { cause: r.error });
  if (r.data.cluster !== cluster) throw new ValidationError(flag, path, `is the join credential of cluster "${r.data.cluster}"; --cluster is "${cluster}"`);
  return text;
}

/** Validates raw values (flag strings) once; the ValidationError names the flag, the value and what is allowed. */
export function parseManifestValues(input: ManifestInput): ManifestValues {
  const raw = Object.fromEntries(Object.entries(input).filter(([, v]) => v !== undefined));
  const required = {
    cluster: 'required: the cluster name, a DNS label like eu1',
    location: 'required: the default location, e.g. aws-eu-west-1 (nodes with a topology.kubernetes.io/region label use that)',
    natsUrl: 'required: comma-separated NATS URLs, e.g. tls://nats.example.com:4222',
  } as const;
  for (const key of ['cluster', 'location', 'natsUrl'] as const) {
    if (raw[key] === undefined) throw new ValidationError(FLAGS[key], undefined, required[key]);
  }
  const r = ValuesSchema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0];
    if (issue?.code === 'unrecognized_keys') {
      const unknown = issue.keys[0] ?? '';
      throw new ValidationError(unknown, raw[unknown], `unknown option; allowed: ${Object.values(FLAGS).join(', ')}`);
    }
    const key = issue?.path[0];
    const flag = typeof key === 'string' ? FLAGS[key as keyof typeof FLAGS] : 'manifests';
    const value: unknown = typeof key === 'string' ? raw[key] : raw;
    throw new ValidationError(flag, value, issue?.message ?? 'invalid', { cause: r.error });
  }
  const v = r.data;
  return Object.freeze({
    cluster: v.cluster,
    location: v.location,
    natsUrls: Object.freeze(v.natsUrl),
    image: v.image ?? defaultImage(),
    topology: v.topology ?? 'mesh',
    coordinatorKey: v.coordinatorKey ?? null,
    monitoring: v.monitoring ?? false,
    joinCredential: v.joinCredentialFile === undefined ? null : readJoinCredential(v.joinCredentialFile, v.cluster),
    natsTls: parseNatsTlsValues(v),
  });
}

export interface RenderedFile {
  readonly name: string;
  readonly content: string;
  /** Holds a secret: written with mode 0600. */
  readonly secret?: boolean;
}

/** The agent manifests for one cluster, in apply order. */
export function renderManifests(values: ManifestValues, options: { deployDir?: string } = {}): RenderedFile[] {
  const dir = join(options.deployDir ?? DEPLOY_DIR, 'agent');
  const header = `# Rendered by \`crosslink manifests\` ${packageVersion()} for cluster ${values.cluster}: edit the values and re-render rather than editing this file.\n`;
  const files: RenderedFile[] = AGENT_TEMPLATES.map((name) => {
    const docs = parseAllDocuments(readFileSync(join(dir, name), 'utf8'));
    const out: string[] = [];
    for (const doc of docs) {
      if (doc.errors.length > 0) throw new Error(`deploy/agent/${name}: ${doc.errors[0]?.message ?? 'invalid YAML'}`);
      applyValues(doc, values);
      // A document that followed "---" in the template prints its own marker; join adds exactly one.
      out.push(doc.toString({ lineWidth: 0, flowCollectionPadding: false }).replace(/^---\n/, ''));
    }
    return { name, content: header + out.join('---\n') };
  });
  if (values.coordinatorKey !== null) {
    files.push({ name: 'coordinator-key.yaml', content: header + coordinatorKeyConfigMap(values.coordinatorKey) });
  }
  if (values.joinCredential !== null) {
    files.push({ name: 'join-credential.yaml', content: header + joinCredentialSecret(values.joinCredential), secret: true });
  }
  const tlsSecret = values.natsTls === null ? null : natsTlsSecret(values.natsTls);
  if (tlsSecret !== null) files.push({ name: 'nats-client-tls.yaml', content: header + tlsSecret, secret: true });
  if (values.monitoring) files.push({ name: MONITORING_FILE, content: header + monitoringDocuments(join(options.deployDir ?? DEPLOY_DIR, 'monitoring')) });
  return files;
}

/** All files as one multi-document stream (for `kubectl apply -f -`). */
export function joinManifests(files: readonly RenderedFile[]): string {
  return files.map((f) => f.content.trimEnd()).join('\n---\n') + '\n';
}

function applyValues(doc: Document, values: ManifestValues): void {
  const kind = doc.get('kind');
  if (kind !== 'DaemonSet') return;
  const containers = doc.getIn(['spec', 'template', 'spec', 'containers']);
  if (!isSeq(containers)) throw new Error('DaemonSet template has no containers');
  const env: Record<string, string> = {
    CROSSLINK_CLUSTER: values.cluster,
    CROSSLINK_LOCATION: values.location,
    CROSSLINK_TOPOLOGY: values.topology,
    CROSSLINK_NATS_URL: values.natsUrls.join(','),
  };
  for (const container of containers.items) {
    if (!isMap(container)) continue;
    container.set('image', values.image);
    const list = container.get('env');
    if (!isSeq(list)) continue;
    for (const item of list.items) {
      if (!isMap(item)) continue;
      const name = item.get('name');
      if (typeof name === 'string' && name in env) item.set('value', env[name]);
    }
  }
  if (values.natsTls !== null) applyNatsTls(doc, values.natsTls);
}

/** The agents' PodMonitor and the PrometheusRule, as shipped (the coordinator's PodMonitor belongs to the control plane's cluster). */
function monitoringDocuments(dir: string): string {
  const out: string[] = [];
  for (const name of ['podmonitor.yaml', 'prometheusrule.yaml']) {
    for (const doc of parseAllDocuments(readFileSync(join(dir, name), 'utf8'))) {
      if (doc.errors.length > 0) throw new Error(`deploy/monitoring/${name}: ${doc.errors[0]?.message ?? 'invalid YAML'}`);
      if (doc.getIn(['metadata', 'name']) === 'crosslink-coordinator') continue;
      out.push(doc.toString({ lineWidth: 0, flowCollectionPadding: false }).replace(/^---\n/, ''));
    }
  }
  return out.join('---\n');
}

function coordinatorKeyConfigMap(publicKey: string): string {
  return stringify({
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: 'crosslink-coordinator', namespace: 'crosslink-system', labels: { 'app.kubernetes.io/part-of': 'crosslink' } },
    data: { 'public-key': publicKey },
  });
}

/** The join credential as the Secret the DaemonSet mounts (a secret: keep the rendered file private). */
function joinCredentialSecret(text: string): string {
  return stringify({
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: JOIN_CREDENTIAL_SECRET, namespace: 'crosslink-system', labels: { 'app.kubernetes.io/part-of': 'crosslink' } },
    type: 'Opaque',
    stringData: { [JOIN_CREDENTIAL_KEY]: text },
  });
}

export interface ManifestsCommandOptions extends ManifestInput {
  readonly out?: string | undefined;
}

/** Renders and writes: into `out` (one file per template) or to `write` (stdout) as one stream. Returns the paths written. */
export function runManifests(opts: ManifestsCommandOptions, write: (text: string) => void = (t) => process.stdout.write(t)): string[] {
  const { out: _out, ...input } = opts;
  const values = parseManifestValues(input);
  const files = renderManifests(values);
  if (opts.out === undefined) {
    write(joinManifests(files));
    return [];
  }
  mkdirSync(opts.out, { recursive: true });
  const paths = files.map((f) => {
    const path = join(opts.out ?? '.', f.name);
    writeFileSync(path, f.content, { mode: f.secret === true ? 0o600 : 0o644 });
    return path;
  });
  write(`${paths.join('\n')}\n`);
  return paths;
}

/** Adds `crosslink manifests` to the CLI program. Errors are ValidationErrors naming the flag. */
export function registerManifestsCommand(program: Command): void {
  program
    .command('manifests')
    .description('render the Kubernetes agent manifests for one cluster (install: crosslink manifests … | kubectl apply -f -)')
    .option(`${FLAGS.cluster} <name>`, 'cluster name, a DNS label (required)')
    .option(`${FLAGS.location} <name>`, 'default location for nodes without a topology.kubernetes.io/region label (required)')
    .option(`${FLAGS.natsUrl} <urls>`, 'NATS URLs the agents connect to, comma-separated, e.g. tls://nats.example.com:4222 (required)')
    .option(`${FLAGS.image} <ref>`, `agent image (default: ${IMAGE_REPOSITORY}:<version>)`)
    .option(`${FLAGS.topology} <mode>`, 'deprecated and ignored by the coordinator: the cluster\'s enrollment decides (crosslink-coordinator cluster add --topology); still accepted: mesh | gateway')
    .option(`${FLAGS.coordinatorKey} <base64>`, 'also render the crosslink-coordinator ConfigMap with this public key')
    .option(`${FLAGS.joinCredentialFile} <file>`, `also render the ${JOIN_CREDENTIAL_SECRET} Secret from this cluster's join credential (from \`crosslink-coordinator cluster add --credential-out\`)`)
    .option(`${FLAGS.natsTlsSecret} <name>`, 'mount this Secret (tls.crt, tls.key, ca.crt: cert-manager\'s layout) as the agents\' NATS TLS client certificate (for a NATS server with tls { verify: true })')
    .option(`${FLAGS.natsTlsCertFile} <file>`, 'also render that Secret (default name crosslink-nats-client-tls) from this PEM client certificate (with --nats-tls-key-file)')
    .option(`${FLAGS.natsTlsKeyFile} <file>`, 'PEM private key of --nats-tls-cert-file')
    .option(`${FLAGS.natsTlsCaFile} <file>`, 'PEM CA of the NATS servers, rendered into the Secret as ca.crt')
    .option(FLAGS.monitoring, 'also render the agents\' PodMonitor and the Crosslink alerts (PrometheusRule; needs prometheus-operator)')
    .option('--out <dir>', 'write one file per manifest into this directory instead of printing one stream')
    .action((opts: ManifestsCommandOptions) => {
      runManifests(opts);
    });
}
