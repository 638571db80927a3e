// The shipped monitoring (deploy/monitoring/): the PrometheusRule's groups pass the real
// `promtool check rules`, the peer-down and gateway-flapping alerts pass `promtool test rules`
// unit tests, and every metric the alerts and the Grafana dashboard use is one the agent or the
// coordinator exports (a renamed metric would silently break them).
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import { parse, parseAllDocuments, stringify } from 'yaml';
import * as z from 'zod';
import { AgentMetrics } from '../agent/metrics/agent-metrics.ts';
import { CoordinatorMetrics } from '../coordinator/metrics.ts';
import { packagePath } from '../lib/package-root.ts';
import { promtool } from './helpers/promtool.ts';
import { tempDir } from './helpers/temp-dir.ts';

const MONITORING = packagePath('deploy/monitoring');

const Rule = z.object({ alert: z.string(), expr: z.string(), for: z.string().optional(), labels: z.record(z.string(), z.string()), annotations: z.record(z.string(), z.string()) });
const PrometheusRule = z.object({ kind: z.literal('PrometheusRule'), spec: z.object({ groups: z.array(z.object({ name: z.string(), rules: z.array(Rule) })) }) });

async function ruleGroups(): Promise<z.infer<typeof PrometheusRule>['spec']['groups']> {
  return PrometheusRule.parse(parse(await readFile(join(MONITORING, 'prometheusrule.yaml'), 'utf8'))).spec.groups;
}

test('promtool check rules accepts the PrometheusRule groups, and the alerts the issue names are there', async (t) => {
  const groups = await ruleGroups();
  const dir = await tempDir(t, 'xl-rules-');
  await writeFile(join(dir, 'rules.yaml'), stringify({ groups }));
  const r = await promtool(['check', 'rules', join(dir, 'rules.yaml')]);
  t.is(r.code, 0, r.output);
  t.regex(r.output, /SUCCESS: \d+ rules found/);
  const alerts = groups.flatMap((g) => g.rules.map((x) => x.alert));
  for (const a of ['CrosslinkPeerDown', 'CrosslinkGatewayFlapping', 'CrosslinkControlPlaneUnreachable', 'CrosslinkReconcileFailing', 'CrosslinkPolicyNotEnforced']) t.true(alerts.includes(a), a);
});

test('promtool test rules: peer down fires after 2 minutes of unanswered probes, not before, not for a peer that answers; gateway flapping fires', async (t) => {
  const dir = await tempDir(t, 'xl-rules-');
  await writeFile(join(dir, 'rules.yaml'), stringify({ groups: await ruleGroups() }));
  const pod = 'crosslink-agent-x1';
  const tests = {
    rule_files: ['rules.yaml'],
    evaluation_interval: '30s',
    tests: [
      {
        interval: '30s',
        input_series: [
          // node-b stops answering at 1m; node-c answers throughout.
          { series: `crosslink_agent_peer_up{pod="${pod}",peer="node-b",cluster="c2"}`, values: '1 1 0 0 0 0 0 0 0 0 0' },
          { series: `crosslink_agent_peer_up{pod="${pod}",peer="node-c",cluster="c3"}`, values: '1x10' },
          // The gateway role moves back and forth every minute.
          { series: `crosslink_agent_gateway{pod="${pod}"}`, values: '0 0 1 1 0 0 1 1 0 0 1' },
        ],
        alert_rule_test: [
          { eval_time: '2m', alertname: 'CrosslinkPeerDown', exp_alerts: [] },
          {
            eval_time: '4m',
            alertname: 'CrosslinkPeerDown',
            exp_alerts: [
              {
                exp_labels: { severity: 'warning', pod, peer: 'node-b', cluster: 'c2' },
                exp_annotations: {
                  summary: `Crosslink peer node-b unreachable from ${pod}`,
                  description: `Probes from ${pod} to peer node-b (cluster c2) through the tunnel have gone unanswered for 2 minutes. Run \`crosslink diagnose\` and \`crosslink ping node-b\` on that node.`,
                },
              },
            ],
          },
          { eval_time: '1m', alertname: 'CrosslinkGatewayFlapping', exp_alerts: [] },
          {
            eval_time: '5m',
            alertname: 'CrosslinkGatewayFlapping',
            exp_alerts: [
              {
                exp_labels: { severity: 'warning', pod },
                exp_annotations: {
                  summary: `Crosslink gateway role flapping on ${pod}`,
                  description: `${pod} gained or lost its cluster's active-gateway role 5 times in 30 minutes; traffic into its cluster is interrupted at every change. Check the node's health probes and its heartbeats.`,
                },
              },
            ],
          },
        ],
      },
    ],
  };
  await writeFile(join(dir, 'tests.yaml'), stringify(tests));
  const r = await promtool(['test', 'rules', join(dir, 'tests.yaml')]);
  t.is(r.code, 0, r.output);
  t.regex(r.output, /SUCCESS/);
});

/** Every metric family name a registry exports, with the series suffixes of histograms. */
function exportedNames(): Set<string> {
  const names = new Set<string>();
  for (const registry of [new AgentMetrics({ processMetrics: false }).registry, new CoordinatorMetrics({ processMetrics: false }).registry]) {
    for (const m of registry.getMetricsAsArray()) {
      names.add(m.name);
      for (const suffix of ['_bucket', '_sum', '_count']) names.add(m.name + suffix);
    }
  }
  return names;
}

const usedNames = (text: string): string[] => [...new Set(text.match(/\bcrosslink_(?:agent|coordinator)_[a-z_]+/g) ?? [])];

test('every metric the alerts and the Grafana dashboard query is exported', async (t) => {
  const exported = exportedNames();
  const rules = await readFile(join(MONITORING, 'prometheusrule.yaml'), 'utf8');
  const dashboardText = await readFile(join(MONITORING, 'grafana-dashboard.json'), 'utf8');
  const dashboard = z.object({ uid: z.string(), panels: z.array(z.object({ id: z.number(), type: z.string(), targets: z.array(z.object({ expr: z.string() })).optional() })) }).parse(JSON.parse(dashboardText));
  const ids = dashboard.panels.map((p) => p.id);
  t.is(new Set(ids).size, ids.length, 'panel ids are unique');
  const exprs = dashboard.panels.flatMap((p) => (p.targets ?? []).map((x) => x.expr)).join('\n');
  for (const name of [...usedNames(rules), ...usedNames(exprs)]) t.true(exported.has(name), `${name} is used but not exported`);
  t.true(usedNames(exprs).length >= 20, 'the dashboard covers the metrics');
  t.false(exported.has('crosslink_agent_no_such_metric'), 'the check can fail');
});

test('the PodMonitors select the agent and coordinator pods on their named metrics port', async (t) => {
  const docs = parseAllDocuments(await readFile(join(MONITORING, 'podmonitor.yaml'), 'utf8')).map((d) => d.toJS() as unknown);
  const PodMonitor = z.object({ kind: z.literal('PodMonitor'), spec: z.object({ selector: z.object({ matchLabels: z.record(z.string(), z.string()) }), podMetricsEndpoints: z.array(z.object({ port: z.string(), path: z.string() })) }) });
  const monitors = docs.map((d) => PodMonitor.parse(d));
  t.deepEqual(monitors.map((m) => m.spec.selector.matchLabels['app.kubernetes.io/name']).sort(), ['crosslink-agent', 'crosslink-coordinator']);
  for (const m of monitors) t.like(m.spec.podMetricsEndpoints[0], { port: 'metrics', path: '/metrics' });
  // The named port exists on the workloads they select.
  for (const file of ['agent/daemonset.yaml', 'control-plane/coordinator.yaml']) {
    const text = await readFile(packagePath(`deploy/${file}`), 'utf8');
    t.regex(text, /- name: metrics\n\s+containerPort: 947[12]/, file);
  }
});
