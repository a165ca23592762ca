// The alert rules of k8s/monitoring.yaml, proven with promtool: `promtool check rules`, then
// `promtool test rules` with k8s/alerts.test.yaml, where each alert has cases that fire and
// cases that must stay quiet. The defective rules they replaced fail the same cases.
import t from 'tap';
import { execFile } from 'node:child_process';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import YAML from 'yaml';
import { ROOT } from './helpers.js';

const run = promisify(execFile);

interface Rule { alert?: string; record?: string; expr: string }
interface RuleFile { groups: Array<{ name: string; rules: Rule[] }> }
interface AlertCase { alertname: string; exp_alerts?: unknown[] }
interface TestFile { tests: Array<{ alert_rule_test?: AlertCase[] }> }

async function rules(): Promise<RuleFile> {
  const docs = YAML.parseAllDocuments(await readFile(path.join(ROOT, 'k8s', 'monitoring.yaml'), 'utf8')).map((d) => d.toJS() as { kind?: string; spec?: RuleFile });
  const rule = docs.find((d) => d.kind === 'PrometheusRule');
  if (rule?.spec === undefined) throw new Error('no PrometheusRule in k8s/monitoring.yaml');
  return { groups: rule.spec.groups };
}

/** Runs promtool on `groups` with the committed unit tests; the exit code and output. */
async function promtool(groups: RuleFile, dir: string): Promise<{ check: number; test: number; output: string }> {
  await writeFile(path.join(dir, 'armor-serve.rules.yaml'), YAML.stringify(groups));
  await copyFile(path.join(ROOT, 'k8s', 'alerts.test.yaml'), path.join(dir, 'alerts.test.yaml'));
  const exec = (args: string[]) => run('promtool', args, { cwd: dir }).then(
    (r) => ({ code: 0, output: r.stdout + r.stderr }),
    (e: { code?: number; stdout?: string; stderr?: string }) => ({ code: typeof e.code === 'number' ? e.code : 1, output: `${e.stdout ?? ''}${e.stderr ?? ''}` }),
  );
  const check = await exec(['check', 'rules', 'armor-serve.rules.yaml']);
  const test = await exec(['test', 'rules', 'alerts.test.yaml']);
  return { check: check.code, test: test.code, output: check.output + test.output };
}

t.test('the alert rules pass promtool check and their unit tests', async (t) => {
  const version = await run('promtool', ['--version']).catch(() => undefined);
  t.ok(version, 'promtool is installed (Debian: apt-get install prometheus; .ci/run does)');
  if (!version) return;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'armor-promtool-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const current = await rules();
  const result = await promtool(current, dir);
  t.equal(result.check, 0, 'promtool check rules');
  t.equal(result.test, 0, `promtool test rules\n${result.output}`);

  // Every alert is tested firing and quiet.
  const tests = YAML.parse(await readFile(path.join(ROOT, 'k8s', 'alerts.test.yaml'), 'utf8')) as TestFile;
  const cases = tests.tests.flatMap((c) => c.alert_rule_test ?? []);
  for (const alert of current.groups.flatMap((g) => g.rules).map((r) => r.alert).filter((a): a is string => a !== undefined)) {
    t.ok(cases.some((c) => c.alertname === alert && (c.exp_alerts?.length ?? 0) > 0), `${alert}: a case where it fires`);
    t.ok(cases.some((c) => c.alertname === alert && (c.exp_alerts?.length ?? 0) === 0), `${alert}: a case where it stays quiet`);
  }

  // The rules they replaced fail: the cases catch each defect.
  const replace = (alert: string, expr: string): RuleFile => ({
    groups: current.groups.map((g) => ({ ...g, rules: g.rules.map((r) => (r.alert === alert ? { ...r, expr } : r)) })),
  });
  const defects: Array<[string, string, string]> = [
    ['ArmorSlowEpisodes', 'histogram_quantile(0.95, sum by (le) (rate(armor_stage_duration_seconds_bucket{stage="total"}[10m]))) > 20', 'a p95 of 12 s interpolated inside the 10-30 s bucket'],
    ['ArmorEpisodeErrors', 'sum by (code) (rate(armor_episode_errors_total{code=~"internal_error|engine_crashed|deadline_exceeded|queue_full"}[5m])) > 0.1', 'an absolute rate that misses 4 failures a minute and never counts overloaded'],
    ['ArmorEpisodeErrors', 'sum(rate(armor_episode_errors_total{code=~"internal_error|engine_crashed|overloaded"}[5m])) / (sum(rate(armor_episodes_total[5m])) + sum(rate(armor_episode_errors_total[5m]))) > 0.05', 'a ratio that is empty on a pod without a single success'],
    ['ArmorCellFailureRateHigh', 'cell:armor_failure_ratio:rate15m > 0.2', 'a failure ratio without volume'],
    ['ArmorTargetAbsent', 'absent(up{job="armor"})', 'the wrong job'],
    ['ArmorAsyncBacklogNearlyFull', 'sum(armor_async_backlog) / max(armor_async_backlog_limit) > 0.8', 'the one shared backlog summed over the replicas that report it'],
  ];
  for (const [alert, expr, why] of defects) {
    const broken = await promtool(replace(alert, expr), dir);
    t.not(broken.test, 0, `${alert} as ${why} fails the unit tests`);
  }
});

t.test('every Grafana dashboard query is valid PromQL (promtool)', async (t) => {
  const version = await run('promtool', ['--version']).catch(() => undefined);
  t.ok(version, 'promtool is installed');
  if (!version) return;
  const dashboard = JSON.parse(await readFile(path.join(ROOT, 'k8s', 'grafana-dashboard.json'), 'utf8')) as { panels: Array<{ title: string; targets?: Array<{ expr: string }> }> };
  const exprs = dashboard.panels.flatMap((p) => (p.targets ?? []).map((target) => ({ panel: p.title, expr: target.expr })));
  t.ok(exprs.some((e) => e.expr.includes('armor_labels_total')), 'operator disagreement is on the dashboard');
  // Each query as a recording rule: promtool parses it exactly as Prometheus would.
  const dir = await mkdtemp(path.join(os.tmpdir(), 'armor-dashboard-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const groups = { groups: [{ name: 'dashboard', rules: exprs.map((e, i) => ({ record: `dashboard:query_${i}`, expr: e.expr })) }] };
  await writeFile(path.join(dir, 'dashboard.rules.yaml'), YAML.stringify(groups));
  const checked = await run('promtool', ['check', 'rules', 'dashboard.rules.yaml'], { cwd: dir }).then(
    () => '',
    (e: { stdout?: string; stderr?: string }) => `${e.stdout ?? ''}${e.stderr ?? ''}`,
  );
  t.equal(checked, '', `${exprs.length} queries parse`);
});
