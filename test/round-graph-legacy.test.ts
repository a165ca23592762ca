// A round graph built before the repetition penalty existed (no repetition_penalty input):
// the runtime still opens it, uses it when no penalty is asked for, and falls back to the host
// loop when one is, with the same answers as the host loop either way.
import { execFile } from 'node:child_process';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { ArmorEngine, defaultOptions } from '../src/engine/armor-engine.js';
import type { EngineResult, EpisodeInput } from '../src/engine/types.js';
import { loadBundle, releaseBundle } from '../src/runtime/bundle.js';
import { BUNDLE_DIR, ROOT } from './helpers.js';

const run = promisify(execFile);

function clip(): EpisodeInput {
  const [frames, height, width] = [4, 96, 128];
  const rgb = new Uint8Array(frames * height * width * 3);
  for (let i = 0; i < rgb.length; i++) rgb[i] = (i * 7 + ((i / 3000) | 0) * 13) % 251;
  return { kind: 'video', frames: { rgb, count: frames, height, width }, sampleFps: 2, task: 'pick the red box into the tote' };
}

t.test('a round graph without repetition_penalty', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'armor-legacy-round-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await cp(BUNDLE_DIR, dir, { recursive: true });
  await run('/usr/bin/python3', [path.join(ROOT, 'models', 'tooling', 'round_graph.py'), '--without-repetition-penalty', dir]);
  const bundle = await loadBundle(dir);
  t.teardown(() => releaseBundle(bundle));
  t.notOk(bundle.sessions.decode_round?.inputNames.includes('repetition_penalty'), 'the graph lacks the input and still passes the contract');
  const inGraph = new ArmorEngine(bundle, { prefixReuse: true, batching: true, inGraph: true });
  const host = new ArmorEngine(bundle, { prefixReuse: true, batching: true, inGraph: false });
  t.equal(inGraph.roundGraph, true);
  let roundCalls = 0;
  const session = bundle.sessions.decode_round!;
  const runRound = session.run.bind(session);
  // Count the round graph's calls (the real session still runs them).
  (session as { run: typeof session.run }).run = ((...args: Parameters<typeof session.run>) => {
    roundCalls++;
    return runRound(...args);
  }) as typeof session.run;
  const tokens = (r: EngineResult) => r.rounds.map((x) => x.candidates.map((c) => c.tokenIds));
  const base = { ...defaultOptions(bundle.manifest.refinement, 5), maxNewTokens: 12 };

  const plain = { ...base, repetitionPenalty: 1 };
  const a = await inGraph.run(clip(), plain);
  t.equal(roundCalls, a.rounds.length, 'without a penalty the rounds run in the graph');
  t.same(tokens(a), tokens(await host.run(clip(), plain)), 'the same tokens as the host loop');

  roundCalls = 0;
  const penalised = { ...base, repetitionPenalty: 1.05 };
  const b = await inGraph.run(clip(), penalised);
  t.equal(roundCalls, 0, 'with a penalty the graph cannot apply, the host loop runs the rounds');
  t.same(tokens(b), tokens(await host.run(clip(), penalised)), 'and answers as the host loop does');
});
