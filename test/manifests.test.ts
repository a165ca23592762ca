// The Kubernetes manifests validate against the API schemas (kubernetes-models: the
// OpenAPI schemas of Kubernetes, KEDA and the Prometheus operator, offline), and hold the
// hardening a production pod needs: non-root, read-only root filesystem, no capabilities,
// a preStop pause, spread across nodes, no `replicas` fighting the autoscaler.
import t from 'tap';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import YAML from 'yaml';
import { Deployment } from 'kubernetes-models/apps/v1';
import { Service, PersistentVolumeClaim } from 'kubernetes-models/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { ScaledObject } from '@kubernetes-models/keda/keda.sh/v1alpha1';
import { PrometheusRule, ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { ROOT } from './helpers.js';

type Manifest = { apiVersion: string; kind: string; metadata: { name: string }; spec?: Record<string, unknown> };
type Validator = (doc: Manifest) => void;

const MODELS: Record<string, Validator> = {
  'apps/v1/Deployment': (d) => new Deployment(d as unknown as ConstructorParameters<typeof Deployment>[0]).validate(),
  'v1/Service': (d) => new Service(d as unknown as ConstructorParameters<typeof Service>[0]).validate(),
  'v1/PersistentVolumeClaim': (d) => new PersistentVolumeClaim(d as unknown as ConstructorParameters<typeof PersistentVolumeClaim>[0]).validate(),
  'policy/v1/PodDisruptionBudget': (d) => new PodDisruptionBudget(d as unknown as ConstructorParameters<typeof PodDisruptionBudget>[0]).validate(),
  'networking.k8s.io/v1/NetworkPolicy': (d) => new NetworkPolicy(d as unknown as ConstructorParameters<typeof NetworkPolicy>[0]).validate(),
  'keda.sh/v1alpha1/ScaledObject': (d) => new ScaledObject(d as unknown as ConstructorParameters<typeof ScaledObject>[0]).validate(),
  'monitoring.coreos.com/v1/PrometheusRule': (d) => new PrometheusRule(d as unknown as ConstructorParameters<typeof PrometheusRule>[0]).validate(),
  'monitoring.coreos.com/v1/ServiceMonitor': (d) => new ServiceMonitor(d as unknown as ConstructorParameters<typeof ServiceMonitor>[0]).validate(),
};

async function manifests(): Promise<Array<{ file: string; doc: Manifest }>> {
  const dir = path.join(ROOT, 'k8s');
  const files = (await readdir(dir)).filter((f) => f.endsWith('.yaml') && f !== 'alerts.test.yaml');
  const out: Array<{ file: string; doc: Manifest }> = [];
  for (const file of files) {
    for (const d of YAML.parseAllDocuments(await readFile(path.join(dir, file), 'utf8'))) {
      const doc = d.toJS() as Manifest | null;
      if (doc) out.push({ file, doc });
    }
  }
  return out;
}

t.test('every manifest validates against its API schema', async (t) => {
  const all = await manifests();
  t.ok(all.length >= 8, `${all.length} objects`);
  for (const { file, doc } of all) {
    const validate = MODELS[`${doc.apiVersion}/${doc.kind}`];
    t.ok(validate, `${file}: ${doc.apiVersion} ${doc.kind} has a schema here`);
    if (validate) t.doesNotThrow(() => validate(doc), `${file}: ${doc.kind} ${doc.metadata.name}`);
  }
  // The validator does reject a bad object.
  t.throws(() => MODELS['apps/v1/Deployment']({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'x' }, spec: { replicas: 'two' } }));
});

t.test('pods are hardened and scale without fighting the autoscaler', async (t) => {
  const all = await manifests();
  const deployments = all.filter((m) => m.doc.kind === 'Deployment');
  t.ok(deployments.length >= 2, 'the CPU and GPU Deployments');
  const scaled = new Set(all.filter((m) => m.doc.kind === 'ScaledObject' || m.doc.kind === 'HorizontalPodAutoscaler')
    .map((m) => (m.doc.spec as { scaleTargetRef: { name: string } }).scaleTargetRef.name));
  for (const { file, doc } of deployments) {
    const spec = doc.spec as { replicas?: number; template: { spec: Record<string, unknown> } };
    const pod = spec.template.spec as {
      securityContext?: { runAsNonRoot?: boolean; seccompProfile?: { type: string } };
      automountServiceAccountToken?: boolean;
      topologySpreadConstraints?: unknown[];
      containers: Array<{ name: string; securityContext?: { allowPrivilegeEscalation?: boolean; readOnlyRootFilesystem?: boolean; capabilities?: { drop?: string[] } };
        lifecycle?: { preStop?: unknown }; volumeMounts?: Array<{ mountPath: string }>; startupProbe?: unknown; readinessProbe?: unknown; livenessProbe?: unknown }>;
    };
    const name = `${file} ${doc.metadata.name}`;
    t.equal(pod.securityContext?.runAsNonRoot, true, `${name}: runs as non-root`);
    t.equal(pod.securityContext?.seccompProfile?.type, 'RuntimeDefault', `${name}: default seccomp profile`);
    t.equal(pod.automountServiceAccountToken, false, `${name}: no service account token`);
    t.ok((pod.topologySpreadConstraints?.length ?? 0) > 0, `${name}: spread across nodes`);
    for (const c of pod.containers) {
      t.equal(c.securityContext?.allowPrivilegeEscalation, false, `${name}/${c.name}: no privilege escalation`);
      t.equal(c.securityContext?.readOnlyRootFilesystem, true, `${name}/${c.name}: read-only root filesystem`);
      t.same(c.securityContext?.capabilities?.drop, ['ALL'], `${name}/${c.name}: no capabilities`);
      t.ok(c.lifecycle?.preStop, `${name}/${c.name}: a preStop pause before SIGTERM`);
      t.ok(c.volumeMounts?.some((v) => v.mountPath === '/tmp'), `${name}/${c.name}: a writable /tmp for uploads`);
      t.ok(c.startupProbe && c.readinessProbe && c.livenessProbe, `${name}/${c.name}: startup, readiness and liveness probes`);
    }
    if (scaled.has(doc.metadata.name)) t.equal(spec.replicas, undefined, `${name}: no replicas next to its autoscaler`);
  }
  t.ok(all.some((m) => m.doc.kind === 'NetworkPolicy'), 'a NetworkPolicy');
  t.ok(scaled.has('armor-serve'), 'the CPU Deployment scales on queue depth (KEDA)');
});
