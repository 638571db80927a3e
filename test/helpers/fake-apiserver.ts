// In-test Kubernetes API server for Nodes.
//
// THIS IS THE ONE STAND-IN WE ACCEPT: no Kubernetes API server package exists for this machine, so
// the Kubernetes tests run the REAL @kubernetes/client-node (CoreV1Api + Watch) against this plain
// node:http server that speaks the real REST and watch protocol for core/v1 Nodes:
//   GET    /api/v1/nodes[?fieldSelector=metadata.name=X]            list (NodeList with resourceVersion)
//   GET    /api/v1/nodes?watch=true&resourceVersion=N&…              newline-delimited watch events;
//          ERROR event with a 410 "Expired" Status when N is older than the retained history
//   GET    /api/v1/nodes/{name}[/status]
//   PATCH  /api/v1/nodes/{name}[/status]   merge-patch, strategic-merge-patch (lists merged by their
//          patchMergeKey, e.g. conditions by type; "$patch: delete"), json-patch
//   PUT    /api/v1/nodes/{name}[/status]   DELETE /api/v1/nodes/{name}
// 409 Conflict for a stale metadata.resourceVersion precondition, 404 for unknown nodes, Status
// objects for every error, one monotonically increasing resourceVersion, no-op writes do not bump it.
// The main resource ignores status changes and /status ignores everything but status, as the real one.
// Namespaced objects for multi-cluster services (issue 12), served generically without watch:
//   services and events (v1), endpointslices (discovery.k8s.io/v1), serviceexports and serviceimports
//   (multicluster.x-k8s.io/v1alpha1, with a /status subresource):
//   GET {prefix}/{plural} (all namespaces) and {prefix}/namespaces/{ns}/{plural}[/{name}],
//   POST (create; 409 AlreadyExists), PUT (replace; 409 on a stale resourceVersion; the main
//   resource keeps status, /status keeps everything else), DELETE (404 when absent).
// Plain HTTP on 127.0.0.1; the kubeconfig from kubeConfig() carries a token that is ignored.
// It also serves static legacy discovery (/api, /apis, /api/v1, /apis/<group>/v1, /version) for the
// kinds deploy/ ships, so `kubectl apply --dry-run=client --validate=false` can map them; every other
// resource is 404 (kubectl then reports "created (dry run)").
//
// Fault injection: restart() on the same port (state kept, like etcd), closeAllWatches(),
// expireNextWatch() (next watch gets 410), compactHistory(), failNextRequests(n).
import http from 'node:http';
import type { Socket } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export interface JsonObject {
  [key: string]: Json;
}

export interface RecordedRequest {
  readonly method: string;
  /** Path without the query string, e.g. "/api/v1/nodes/n1/status". */
  readonly path: string;
  readonly query: Readonly<Record<string, string>>;
  readonly contentType: string | undefined;
  readonly body: Json | undefined;
  status: number;
}

export interface FailureInjection {
  readonly status?: number;
  /** Which requests fail (default: any). */
  readonly match?: (req: { readonly method: string; readonly path: string; readonly watch: boolean }) => boolean;
}

interface ActiveWatch {
  readonly res: http.ServerResponse;
  readonly name: string | undefined;
  readonly bookmarks: boolean;
  timer: NodeJS.Timeout | undefined;
}

interface HistoryEvent {
  readonly rv: number;
  readonly type: 'ADDED' | 'MODIFIED' | 'DELETED';
  readonly object: JsonObject;
}

/** Discovery: group → [resource, kind, namespaced] for the kinds deploy/ uses. */
const DISCOVERY: Readonly<Record<string, readonly (readonly [string, string, boolean])[]>> = {
  '': [
    ['namespaces', 'Namespace', false],
    ['nodes', 'Node', false],
    ['serviceaccounts', 'ServiceAccount', true],
    ['configmaps', 'ConfigMap', true],
    ['secrets', 'Secret', true],
    ['services', 'Service', true],
    ['events', 'Event', true],
    ['resourcequotas', 'ResourceQuota', true],
  ],
  apps: [
    ['daemonsets', 'DaemonSet', true],
    ['deployments', 'Deployment', true],
    ['statefulsets', 'StatefulSet', true],
  ],
  'rbac.authorization.k8s.io': [
    ['clusterroles', 'ClusterRole', false],
    ['clusterrolebindings', 'ClusterRoleBinding', false],
    ['roles', 'Role', true],
    ['rolebindings', 'RoleBinding', true],
  ],
  policy: [['poddisruptionbudgets', 'PodDisruptionBudget', true]],
  'apiextensions.k8s.io': [['customresourcedefinitions', 'CustomResourceDefinition', false]],
};

/** The namespaced resources served generically (plural → where and what). */
export const NAMESPACED = {
  services: { prefix: '/api/v1', apiVersion: 'v1', kind: 'Service', status: false },
  events: { prefix: '/api/v1', apiVersion: 'v1', kind: 'Event', status: false },
  endpointslices: { prefix: '/apis/discovery.k8s.io/v1', apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', status: false },
  serviceexports: { prefix: '/apis/multicluster.x-k8s.io/v1alpha1', apiVersion: 'multicluster.x-k8s.io/v1alpha1', kind: 'ServiceExport', status: true },
  serviceimports: { prefix: '/apis/multicluster.x-k8s.io/v1alpha1', apiVersion: 'multicluster.x-k8s.io/v1alpha1', kind: 'ServiceImport', status: true },
} as const;
export type NamespacedPlural = keyof typeof NAMESPACED;

const NAMESPACED_PATH = /^(\/api\/v1|\/apis\/[^/]+\/[^/]+)(?:\/namespaces\/([^/]+))?\/([a-z]+)(?:\/([^/]+))?(\/status)?$/;

/** Strategic-merge list keys for the Node fields that have one (from the Kubernetes API types). */
const MERGE_KEYS: Readonly<Record<string, string>> = {
  'status.conditions': 'type',
  'status.addresses': 'type',
  'status.images': 'names',
  'metadata.ownerReferences': 'uid',
};

class HttpError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

export class FakeApiServer {
  readonly requests: RecordedRequest[] = [];
  private server: http.Server | undefined;
  private readonly sockets = new Set<Socket>();
  private readonly watches = new Set<ActiveWatch>();
  private readonly nodes = new Map<string, JsonObject>();
  /** Namespaced objects by `<plural>/<namespace>/<name>`. */
  private readonly objects = new Map<string, JsonObject>();
  private rv = 100;
  private history: HistoryEvent[] = [];
  /** Events with rv <= this are gone: a watch from an older rv gets 410. */
  private compactedRv = 100;
  private failures: { remaining: number; status: number; match: NonNullable<FailureInjection['match']> }[] = [];
  private expireWatches = 0;
  private portNumber = 0;
  private uidCounter = 0;

  private constructor(private readonly historyLimit: number) {}

  static async start(options: { historyLimit?: number } = {}): Promise<FakeApiServer> {
    const s = new FakeApiServer(options.historyLimit ?? 1000);
    await s.listen(0);
    return s;
  }

  get port(): number {
    return this.portNumber;
  }

  get url(): string {
    return `http://127.0.0.1:${this.portNumber}`;
  }

  get resourceVersion(): string {
    return String(this.rv);
  }

  get watchCount(): number {
    return this.watches.size;
  }

  /** A kubeconfig for the real client: plain http (skipTLSVerify is what the client requires for http). */
  kubeConfig(): KubeConfig {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'fake', server: this.url, skipTLSVerify: true }],
      users: [{ name: 'fake', token: 'ignored-by-the-fake-server' }],
      contexts: [{ name: 'fake', cluster: 'fake', user: 'fake' }],
      currentContext: 'fake',
    });
    return kc;
  }

  // ---- state, as a controller or kubelet would change it ----

  createNode(node: JsonObject): JsonObject {
    const name = nameOf(node);
    if (this.nodes.has(name)) throw new Error(`node ${name} exists`);
    const stored = cloneObject(node);
    const md = objectAt(stored, 'metadata');
    md['uid'] = `00000000-0000-4000-8000-${String(++this.uidCounter).padStart(12, '0')}`;
    md['creationTimestamp'] = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
    stored['kind'] = 'Node';
    stored['apiVersion'] = 'v1';
    return this.commit(name, stored, 'ADDED');
  }

  updateNode(name: string, mutate: (node: JsonObject) => void): JsonObject {
    const current = this.nodes.get(name);
    if (!current) throw new Error(`no node ${name}`);
    const next = cloneObject(current);
    mutate(next);
    objectAt(next, 'metadata')['resourceVersion'] = objectAt(current, 'metadata')['resourceVersion'] ?? null;
    if (deepEqual(next, current)) return cloneObject(current);
    return this.commit(name, next, 'MODIFIED');
  }

  deleteNode(name: string): void {
    const current = this.nodes.get(name);
    if (!current) throw new Error(`no node ${name}`);
    this.nodes.delete(name);
    const gone = cloneObject(current);
    objectAt(gone, 'metadata')['resourceVersion'] = String(++this.rv);
    this.emit({ rv: this.rv, type: 'DELETED', object: gone });
  }

  getNode(name: string): JsonObject | undefined {
    const n = this.nodes.get(name);
    return n ? (cloneObject(n)) : undefined;
  }

  // ---- namespaced objects (services, endpointslices, serviceexports, serviceimports) ----

  /** Creates or replaces (spec and status as given) a namespaced object, as a controller would. */
  putObject(plural: NamespacedPlural, object: JsonObject): JsonObject {
    const def = NAMESPACED[plural];
    const md = objectAt(object, 'metadata');
    const ns = md['namespace'];
    if (typeof ns !== 'string') throw new Error('metadata.namespace is required');
    const key = `${plural}/${ns}/${nameOf(object)}`;
    const current = this.objects.get(key);
    const next = cloneObject(object);
    next['kind'] = def.kind;
    next['apiVersion'] = def.apiVersion;
    const nmd = objectAt(next, 'metadata');
    const cmd = current ? objectAt(current, 'metadata') : undefined;
    nmd['uid'] = cmd?.['uid'] ?? `00000000-0000-4000-8000-${String(++this.uidCounter).padStart(12, '0')}`;
    nmd['creationTimestamp'] = cmd?.['creationTimestamp'] ?? new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
    nmd['generation'] = cmd?.['generation'] ?? 1;
    nmd['resourceVersion'] = cmd?.['resourceVersion'] ?? null;
    if (current && deepEqual(next, current)) return cloneObject(current);
    nmd['resourceVersion'] = String(++this.rv);
    this.objects.set(key, next);
    return cloneObject(next);
  }

  getObject(plural: NamespacedPlural, namespace: string, name: string): JsonObject | undefined {
    const o = this.objects.get(`${plural}/${namespace}/${name}`);
    return o ? cloneObject(o) : undefined;
  }

  listObjects(plural: NamespacedPlural): JsonObject[] {
    return [...this.objects].filter(([k]) => k.startsWith(`${plural}/`)).map(([, v]) => cloneObject(v));
  }

  deleteObject(plural: NamespacedPlural, namespace: string, name: string): boolean {
    const gone = this.objects.delete(`${plural}/${namespace}/${name}`);
    if (gone) this.rv++;
    return gone;
  }

  private routeNamespaced(method: string, path: string, body: Json | undefined): { status: number; object: JsonObject } | undefined {
    const m = NAMESPACED_PATH.exec(path);
    if (!m) return undefined;
    const [, prefix, ns, plural, name, status] = m;
    if (plural === undefined || !(plural in NAMESPACED)) return undefined;
    const def = NAMESPACED[plural as NamespacedPlural];
    if (def.prefix !== prefix) return undefined;
    if (status !== undefined && !def.status) throw new HttpError(404, 'NotFound', `${plural} have no status subresource here`);
    if (name === undefined) {
      if (method === 'GET') {
        const items = this.listObjects(plural as NamespacedPlural).filter((o) => ns === undefined || objectAt(o, 'metadata')['namespace'] === ns);
        return { status: 200, object: { kind: `${def.kind}List`, apiVersion: def.apiVersion, metadata: { resourceVersion: String(this.rv) }, items } };
      }
      if (method !== 'POST' || ns === undefined) throw new HttpError(405, 'MethodNotAllowed', `${method} is not supported on ${path}`);
      if (!isObject(body)) throw new HttpError(400, 'BadRequest', `body must be a ${def.kind} object`);
      const bodyMd = isObject(body['metadata']) ? body['metadata'] : {};
      if (bodyMd['namespace'] !== undefined && bodyMd['namespace'] !== ns) throw new HttpError(400, 'BadRequest', 'the namespace of the object does not match the namespace on the URL');
      const n = nameOf(body);
      if (this.objects.has(`${plural}/${ns}/${n}`)) throw new HttpError(409, 'AlreadyExists', `${plural} "${n}" already exists`);
      const created = cloneObject(body);
      objectAt(created, 'metadata')['namespace'] = ns;
      Reflect.deleteProperty(created, 'status');
      return { status: 201, object: this.putObject(plural as NamespacedPlural, created) };
    }
    if (ns === undefined) throw new HttpError(404, 'NotFound', `the server could not find the requested resource (${path})`);
    const n = decodeURIComponent(name);
    const key = `${plural}/${ns}/${n}`;
    const current = this.objects.get(key);
    if (!current) throw new HttpError(404, 'NotFound', `${plural}.${def.apiVersion.split('/')[0] ?? ''} "${n}" not found`);
    switch (method) {
      case 'GET':
        return { status: 200, object: cloneObject(current) };
      case 'DELETE':
        this.deleteObject(plural as NamespacedPlural, ns, n);
        return { status: 200, object: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', details: { name: n, kind: plural } } };
      case 'PUT': {
        if (!isObject(body)) throw new HttpError(400, 'BadRequest', `body must be a ${def.kind} object`);
        if (nameOf(body) !== n) throw new HttpError(400, 'BadRequest', `the name of the object (${nameOf(body)}) does not match the name on the URL (${n})`);
        const currentRv = objectAt(current, 'metadata')['resourceVersion'];
        const wantRv = isObject(body['metadata']) ? body['metadata']['resourceVersion'] : undefined;
        if (wantRv !== undefined && wantRv !== null && wantRv !== '' && wantRv !== currentRv) {
          throw new HttpError(409, 'Conflict', `Operation cannot be fulfilled on ${plural} "${n}": the object has been modified; please apply your changes to the latest version and try again`);
        }
        const next = cloneObject(body);
        if (status !== undefined) {
          for (const k of Object.keys(next)) if (k !== 'status') Reflect.deleteProperty(next, k);
          for (const [k, v] of Object.entries(current)) if (k !== 'status') next[k] = clone(v);
        } else {
          objectAt(next, 'metadata')['namespace'] = ns;
          if (current['status'] === undefined) Reflect.deleteProperty(next, 'status');
          else next['status'] = clone(current['status']);
        }
        return { status: 200, object: this.putObject(plural as NamespacedPlural, next) };
      }
      default:
        throw new HttpError(405, 'MethodNotAllowed', `${method} is not supported`);
    }
  }

  // ---- fault injection ----

  /** Ends every open watch cleanly (as an API server does on its watch timeout). */
  closeAllWatches(): void {
    for (const w of [...this.watches]) this.endWatch(w);
  }

  /** The next `n` watch requests get an ERROR event with a 410 Expired Status. */
  expireNextWatch(n = 1): void {
    this.expireWatches += n;
  }

  /** Forgets the event history: any watch from a resourceVersion before now gets 410. */
  compactHistory(): void {
    this.history = [];
    this.compactedRv = this.rv;
  }

  /** The next `n` matching requests get a Status error (default 500) instead of being served. */
  failNextRequests(n: number, injection: FailureInjection = {}): void {
    this.failures.push({ remaining: n, status: injection.status ?? 500, match: injection.match ?? (() => true) });
  }

  /** Sends a BOOKMARK with the current resourceVersion to watches that allow bookmarks. */
  sendBookmarks(): void {
    for (const w of this.watches) {
      if (w.bookmarks) writeEvent(w.res, 'BOOKMARK', { kind: 'Node', apiVersion: 'v1', metadata: { resourceVersion: String(this.rv) } });
    }
  }

  // ---- lifecycle ----

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    for (const w of [...this.watches]) this.endWatch(w);
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    await closed;
  }

  /** Stops and listens again on the same port; nodes and history survive (they would be in etcd). */
  async restart(): Promise<void> {
    await this.stop();
    await this.listen(this.portNumber);
  }

  private listen(port: number): Promise<void> {
    const server = http.createServer((req, res) => this.handle(req, res));
    server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        const addr = server.address();
        if (addr && typeof addr === 'object') this.portNumber = addr.port;
        resolve();
      });
    });
  }

  // ---- HTTP ----

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://localhost');
      const query = Object.fromEntries(url.searchParams);
      const method = req.method ?? 'GET';
      const raw = Buffer.concat(chunks).toString('utf8');
      const contentType = req.headers['content-type']?.split(';')[0]?.trim();
      let body: Json | undefined;
      const record: RecordedRequest = { method, path: url.pathname, query, contentType, body: undefined, status: 0 };
      this.requests.push(record);
      try {
        if (raw !== '') {
          try {
            body = JSON.parse(raw) as Json;
          } catch {
            throw new HttpError(400, 'BadRequest', `request body is not JSON: ${raw.slice(0, 80)}`);
          }
        }
        (record as { body: Json | undefined }).body = body;
        const watch = method === 'GET' && (query['watch'] === 'true' || query['watch'] === '1');
        const failure = this.failures.find((f) => f.remaining > 0 && f.match({ method, path: url.pathname, watch }));
        if (failure) {
          failure.remaining--;
          throw new HttpError(failure.status, failure.status === 503 ? 'ServiceUnavailable' : 'InternalError', 'injected failure');
        }
        if (watch && url.pathname === '/api/v1/nodes') {
          record.status = 200;
          this.startWatch(res, query);
          return;
        }
        const { status, object } = this.route(method, url.pathname, query, contentType, body);
        record.status = status;
        sendJson(res, status, object);
      } catch (err) {
        const e = err instanceof HttpError ? err : new HttpError(500, 'InternalError', err instanceof Error ? err.message : String(err));
        record.status = e.code;
        sendJson(res, e.code, statusObject(e.code, e.reason, e.message));
      }
    });
  }

  private route(method: string, path: string, query: Record<string, string>, contentType: string | undefined, body: Json | undefined): { status: number; object: JsonObject } {
    const discovery = method === 'GET' ? discoveryDocument(path) : undefined;
    if (discovery) return { status: 200, object: discovery };
    const namespaced = this.routeNamespaced(method, path, body);
    if (namespaced) return namespaced;
    if (path === '/api/v1/nodes') {
      if (method !== 'GET') throw new HttpError(405, 'MethodNotAllowed', `${method} is not supported on the node collection here`);
      const name = selectedName(query['fieldSelector']);
      const items = [...this.nodes.values()].filter((n) => name === undefined || nameOf(n) === name).map((n) => clone(n));
      return { status: 200, object: { kind: 'NodeList', apiVersion: 'v1', metadata: { resourceVersion: String(this.rv) }, items } };
    }
    const m = /^\/api\/v1\/nodes\/([^/]+)(\/status)?$/.exec(path);
    if (!m || m[1] === undefined) throw new HttpError(404, 'NotFound', `the server could not find the requested resource (${path})`);
    const name = decodeURIComponent(m[1]);
    const sub = m[2] ? 'status' : 'main';
    const current = this.nodes.get(name);
    if (!current) throw new HttpError(404, 'NotFound', `nodes "${name}" not found`);
    switch (method) {
      case 'GET':
        return { status: 200, object: cloneObject(current) };
      case 'PATCH':
        return { status: 200, object: this.write(name, current, sub, applyPatch(current, body, contentType)) };
      case 'PUT':
        if (!isObject(body)) throw new HttpError(400, 'BadRequest', 'body must be a Node object');
        if (nameOf(body) !== name) throw new HttpError(400, 'BadRequest', `the name of the object (${nameOf(body)}) does not match the name on the URL (${name})`);
        return { status: 200, object: this.write(name, current, sub, cloneObject(body)) };
      case 'DELETE':
        if (sub === 'status') throw new HttpError(405, 'MethodNotAllowed', 'DELETE on nodes/status');
        this.deleteNode(name);
        return { status: 200, object: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', details: { name, kind: 'nodes' } } };
      default:
        throw new HttpError(405, 'MethodNotAllowed', `${method} is not supported`);
    }
  }

  /** Applies the subresource rules and the resourceVersion precondition, then commits if anything changed. */
  private write(name: string, current: JsonObject, sub: 'main' | 'status', proposed: JsonObject): JsonObject {
    const currentRv = objectAt(current, 'metadata')['resourceVersion'];
    const proposedMd = isObject(proposed['metadata']) ? proposed['metadata'] : {};
    const wantRv = proposedMd['resourceVersion'];
    if (wantRv !== undefined && wantRv !== null && wantRv !== '' && wantRv !== currentRv) {
      throw new HttpError(409, 'Conflict', `Operation cannot be fulfilled on nodes "${name}": the object has been modified; please apply your changes to the latest version and try again`);
    }
    const next = cloneObject(proposed);
    if (sub === 'status') {
      next['metadata'] = clone(current['metadata'] ?? {});
      next['spec'] = clone(current['spec'] ?? {});
    } else {
      const md = objectAt(next, 'metadata');
      const curMd = objectAt(current, 'metadata');
      for (const k of ['name', 'uid', 'creationTimestamp']) md[k] = curMd[k] ?? null;
      if (current['status'] === undefined) delete next['status'];
      else next['status'] = clone(current['status']);
    }
    next['kind'] = 'Node';
    next['apiVersion'] = 'v1';
    objectAt(next, 'metadata')['resourceVersion'] = currentRv ?? null;
    if (deepEqual(next, current)) return cloneObject(current);
    return this.commit(name, next, 'MODIFIED');
  }

  private commit(name: string, node: JsonObject, type: 'ADDED' | 'MODIFIED'): JsonObject {
    objectAt(node, 'metadata')['resourceVersion'] = String(++this.rv);
    this.nodes.set(name, node);
    this.emit({ rv: this.rv, type, object: cloneObject(node) });
    return cloneObject(node);
  }

  private emit(event: HistoryEvent): void {
    this.history.push(event);
    while (this.history.length > this.historyLimit) {
      const dropped = this.history.shift();
      if (dropped) this.compactedRv = dropped.rv;
    }
    for (const w of this.watches) {
      if (w.name === undefined || w.name === nameOf(event.object)) writeEvent(w.res, event.type, event.object);
    }
  }

  private startWatch(res: http.ServerResponse, query: Record<string, string>): void {
    res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked', 'Cache-Control': 'no-cache, private' });
    res.flushHeaders();
    const name = selectedName(query['fieldSelector']);
    const rvText = query['resourceVersion'];
    if (this.expireWatches > 0) {
      this.expireWatches--;
      writeEvent(res, 'ERROR', statusObject(410, 'Expired', `too old resource version: ${rvText ?? ''} (${this.rv})`));
      res.end();
      return;
    }
    if (rvText === undefined || rvText === '' || rvText === '0') {
      // No resourceVersion: synthetic ADDED events for the current state, then changes.
      for (const n of this.nodes.values()) if (name === undefined || nameOf(n) === name) writeEvent(res, 'ADDED', n);
    } else {
      const from = Number(rvText);
      if (!Number.isInteger(from)) {
        writeEvent(res, 'ERROR', statusObject(400, 'BadRequest', `invalid resourceVersion ${rvText}`));
        res.end();
        return;
      }
      if (from < this.compactedRv) {
        writeEvent(res, 'ERROR', statusObject(410, 'Expired', `too old resource version: ${from} (${this.compactedRv})`));
        res.end();
        return;
      }
      for (const e of this.history) if (e.rv > from && (name === undefined || nameOf(e.object) === name)) writeEvent(res, e.type, e.object);
    }
    const watch: ActiveWatch = { res, name, bookmarks: query['allowWatchBookmarks'] === 'true', timer: undefined };
    const timeoutSeconds = Number(query['timeoutSeconds'] ?? '0');
    if (timeoutSeconds > 0) watch.timer = setTimeout(() => this.endWatch(watch), timeoutSeconds * 1000);
    this.watches.add(watch);
    res.on('close', () => {
      clearTimeout(watch.timer);
      this.watches.delete(watch);
    });
  }

  private endWatch(w: ActiveWatch): void {
    clearTimeout(w.timer);
    this.watches.delete(w);
    w.res.end();
  }
}

function discoveryDocument(path: string): JsonObject | undefined {
  const resourceList = (groupVersion: string, resources: readonly (readonly [string, string, boolean])[]): JsonObject => ({
    kind: 'APIResourceList',
    apiVersion: 'v1',
    groupVersion,
    resources: resources.map(([name, kind, namespaced]) => ({
      name,
      singularName: kind.toLowerCase(),
      namespaced,
      kind,
      verbs: ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'],
    })),
  });
  if (path === '/version') return { major: '1', minor: '32', gitVersion: 'v1.32.0-crosslink-fake', platform: 'linux/amd64' };
  if (path === '/api') return { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: '127.0.0.1' }] };
  if (path === '/api/v1') return resourceList('v1', DISCOVERY[''] ?? []);
  if (path === '/apis') {
    const groups = Object.keys(DISCOVERY)
      .filter((g) => g !== '')
      .map((g) => ({ name: g, versions: [{ groupVersion: `${g}/v1`, version: 'v1' }], preferredVersion: { groupVersion: `${g}/v1`, version: 'v1' } }));
    return { kind: 'APIGroupList', apiVersion: 'v1', groups };
  }
  const m = /^\/apis\/([^/]+)\/v1$/.exec(path);
  const group = m?.[1];
  if (group !== undefined && group !== '' && DISCOVERY[group]) return resourceList(`${group}/v1`, DISCOVERY[group]);
  return undefined;
}

// ---- fixtures ----

export interface NodeFixture {
  readonly name: string;
  readonly podCIDRs?: readonly string[];
  /** Only spec.podCIDR (singular), as on older clusters. */
  readonly podCIDR?: string;
  readonly addresses?: readonly { readonly type: string; readonly address: string }[];
  readonly labels?: Readonly<Record<string, string>>;
  readonly annotations?: Readonly<Record<string, string>>;
}

/** A Node as kubelet and the node controller would have filled it in (with a kubelet Ready condition). */
export function nodeObject(f: NodeFixture): JsonObject {
  const spec: JsonObject = {};
  if (f.podCIDRs) {
    spec['podCIDRs'] = [...f.podCIDRs];
    if (f.podCIDRs[0] !== undefined) spec['podCIDR'] = f.podCIDRs[0];
  }
  if (f.podCIDR !== undefined) spec['podCIDR'] = f.podCIDR;
  return {
    kind: 'Node',
    apiVersion: 'v1',
    metadata: { name: f.name, labels: { 'kubernetes.io/hostname': f.name, ...(f.labels ?? {}) }, annotations: { ...(f.annotations ?? {}) } },
    spec,
    status: {
      addresses: (f.addresses ?? []).map((a) => ({ type: a.type, address: a.address })),
      conditions: [
        {
          type: 'Ready',
          status: 'True',
          reason: 'KubeletReady',
          message: 'kubelet is posting ready status',
          lastHeartbeatTime: '2025-01-01T00:00:00Z',
          lastTransitionTime: '2025-01-01T00:00:00Z',
        },
      ],
    },
  };
}

// ---- patch semantics ----

function applyPatch(current: JsonObject, body: Json | undefined, contentType: string | undefined): JsonObject {
  if (body === undefined) throw new HttpError(400, 'BadRequest', 'patch body is empty');
  let result: Json;
  switch (contentType) {
    case 'application/merge-patch+json':
      result = mergePatch(current, body);
      break;
    case 'application/strategic-merge-patch+json':
      result = strategicMerge(current, body, '');
      break;
    case 'application/json-patch+json':
      result = jsonPatch(current, body);
      break;
    default:
      throw new HttpError(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got ${contentType ?? 'none'})`);
  }
  if (!isObject(result)) throw new HttpError(422, 'Invalid', 'patch result is not an object');
  return result;
}

/** RFC 7386. */
function mergePatch(target: Json | undefined, patch: Json): Json {
  if (!isObject(patch)) return clone(patch);
  const out: JsonObject = isObject(target) ? (cloneObject(target)) : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) Reflect.deleteProperty(out, k);
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** Kubernetes strategic merge: like a merge patch, but lists with a patchMergeKey merge element-wise. */
function strategicMerge(target: Json | undefined, patch: Json, path: string): Json {
  if (!isObject(patch)) return clone(patch);
  if (patch['$patch'] === 'replace') {
    const replaced = cloneObject(patch);
    Reflect.deleteProperty(replaced, '$patch');
    return replaced;
  }
  const out: JsonObject = isObject(target) ? (cloneObject(target)) : {};
  for (const [k, v] of Object.entries(patch)) {
    if (k.startsWith('$')) continue; // $retainKeys, $setElementOrder/…: ordering hints, not needed here
    const childPath = path === '' ? k : `${path}.${k}`;
    const mergeKey = MERGE_KEYS[childPath];
    if (v === null) Reflect.deleteProperty(out, k);
    else if (Array.isArray(v) && mergeKey !== undefined) out[k] = mergeList(out[k], v, mergeKey, childPath);
    else if (isObject(v)) out[k] = strategicMerge(out[k], v, childPath);
    else out[k] = clone(v);
  }
  return out;
}

function mergeList(target: Json | undefined, items: Json[], key: string, path: string): Json[] {
  const list: Json[] = Array.isArray(target) ? target.map((e) => clone(e)) : [];
  for (const item of items) {
    if (!isObject(item) || item[key] === undefined) throw new HttpError(422, 'Invalid', `${path}: every element needs its merge key "${key}"`);
    const idx = list.findIndex((e) => isObject(e) && deepEqual(e[key] ?? null, item[key] ?? null));
    if (item['$patch'] === 'delete') {
      if (idx >= 0) list.splice(idx, 1);
      continue;
    }
    if (idx >= 0) list[idx] = strategicMerge(list[idx], item, path);
    else list.push(strategicMerge({}, item, path));
  }
  return list;
}

/** RFC 6902 (add, remove, replace, test, move, copy). */
function jsonPatch(current: JsonObject, ops: Json): Json {
  if (!Array.isArray(ops)) throw new HttpError(400, 'BadRequest', 'json-patch body must be an array of operations');
  let doc: Json = clone(current);
  for (const op of ops) {
    if (!isObject(op) || typeof op['op'] !== 'string' || typeof op['path'] !== 'string') throw new HttpError(400, 'BadRequest', `invalid json-patch operation ${JSON.stringify(op)}`);
    const path = op['path'];
    switch (op['op']) {
      case 'add':
        doc = pointerSet(doc, path, clone(op['value'] ?? null), 'add');
        break;
      case 'replace':
        pointerGet(doc, path);
        doc = pointerSet(doc, path, clone(op['value'] ?? null), 'replace');
        break;
      case 'remove':
        doc = pointerRemove(doc, path);
        break;
      case 'test':
        if (!deepEqual(pointerGet(doc, path), op['value'] ?? null)) throw new HttpError(422, 'Invalid', `json-patch test failed at ${path}`);
        break;
      case 'move':
      case 'copy': {
        const from = op['from'];
        if (typeof from !== 'string') throw new HttpError(400, 'BadRequest', `${op['op']} needs "from"`);
        const value = clone(pointerGet(doc, from));
        if (op['op'] === 'move') doc = pointerRemove(doc, from);
        doc = pointerSet(doc, path, value, 'add');
        break;
      }
      default:
        throw new HttpError(400, 'BadRequest', `unknown json-patch op ${op['op']}`);
    }
  }
  return doc;
}

function pointerTokens(path: string): string[] {
  if (path === '') return [];
  if (!path.startsWith('/')) throw new HttpError(422, 'Invalid', `json pointer must start with "/": ${path}`);
  return path
    .slice(1)
    .split('/')
    .map((t) => t.replaceAll('~1', '/').replaceAll('~0', '~'));
}

function pointerGet(doc: Json, path: string): Json {
  let cur: Json = doc;
  for (const t of pointerTokens(path)) {
    if (Array.isArray(cur)) cur = cur[Number(t)] ?? missing(path);
    else if (isObject(cur) && t in cur) cur = cur[t] ?? null;
    else missing(path);
  }
  return cur;
}

function pointerSet(doc: Json, path: string, value: Json, mode: 'add' | 'replace'): Json {
  const tokens = pointerTokens(path);
  const last = tokens.pop();
  if (last === undefined) return value;
  const parent = pointerGet(doc, tokens.length === 0 ? '' : `/${tokens.map(escapeToken).join('/')}`);
  if (Array.isArray(parent)) {
    const idx = last === '-' ? parent.length : Number(last);
    if (!Number.isInteger(idx) || idx < 0 || idx > parent.length) missing(path);
    if (mode === 'add') parent.splice(idx, 0, value);
    else parent[idx] = value;
  } else if (isObject(parent)) parent[last] = value;
  else missing(path);
  return doc;
}

function pointerRemove(doc: Json, path: string): Json {
  const tokens = pointerTokens(path);
  const last = tokens.pop();
  if (last === undefined) throw new HttpError(422, 'Invalid', 'cannot remove the whole document');
  const parent = pointerGet(doc, tokens.length === 0 ? '' : `/${tokens.map(escapeToken).join('/')}`);
  if (Array.isArray(parent) && Number(last) < parent.length) parent.splice(Number(last), 1);
  else if (isObject(parent) && last in parent) Reflect.deleteProperty(parent, last);
  else missing(path);
  return doc;
}

function escapeToken(t: string): string {
  return t.replaceAll('~', '~0').replaceAll('/', '~1');
}

function missing(path: string): never {
  throw new HttpError(422, 'Invalid', `json-patch path not found: ${path}`);
}

// ---- helpers ----

function statusObject(code: number, reason: string, message: string): JsonObject {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

function sendJson(res: http.ServerResponse, status: number, body: JsonObject): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

function writeEvent(res: http.ServerResponse, type: string, object: JsonObject): void {
  if (!res.writableEnded) res.write(`${JSON.stringify({ type, object })}\n`);
}

function selectedName(fieldSelector: string | undefined): string | undefined {
  if (fieldSelector === undefined || fieldSelector === '') return undefined;
  const m = /^metadata\.name==?(.+)$/.exec(fieldSelector);
  if (!m || m[1] === undefined) throw new HttpError(400, 'BadRequest', `field selector not supported here: ${fieldSelector}`);
  return m[1];
}

function nameOf(node: Json): string {
  const md = isObject(node) ? node['metadata'] : undefined;
  const name = isObject(md) ? md['name'] : undefined;
  if (typeof name !== 'string') throw new HttpError(400, 'BadRequest', 'metadata.name is required');
  return name;
}

function objectAt(obj: JsonObject, key: string): JsonObject {
  const v = obj[key];
  if (isObject(v)) return v;
  const fresh: JsonObject = {};
  obj[key] = fresh;
  return fresh;
}

function isObject(v: Json | undefined): v is JsonObject {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function clone(v: Json): Json {
  return structuredClone(v);
}

function cloneObject(v: JsonObject): JsonObject {
  return structuredClone(v);
}

function deepEqual(a: Json, b: Json): boolean {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => deepEqual(x, b[i] ?? null));
  if (isObject(a) && isObject(b)) {
    const ka = Object.keys(a);
    const kb = Object.keys(b);
    return ka.length === kb.length && ka.every((k) => k in b && deepEqual(a[k] ?? null, b[k] ?? null));
  }
  return false;
}
