// The answer's choice beyond the paper: consensus (minimum Bayes risk on the candidates'
// agreement), the degenerate-text check both it and needs_review rely on, and needs_review's reasons.
import t from 'tap';
import { contradicts, review } from '../src/engine/review.js';
import { degenerateReason, lcsF1, selectCandidate } from '../src/engine/selection.js';
import type { Candidate } from '../src/engine/types.js';
import type { ArmorManifest } from '../src/runtime/manifest.js';

/** A candidate that ended with eos (one entropy more than tokens) unless `eos` is false. */
function cand(round: number, trajectory: number, failure: boolean, tokenIds: number[], c = 0.1, hDet = 0.05, eos = true): Candidate {
  return {
    round, trajectory, failure, tokenIds, c, hDet,
    label: failure ? 'failure' : 'success',
    detectionLogit: failure ? 5 : -5,
    pFail: failure ? 0.99 : 0.01,
    hReason: 0.5,
    explanation: tokenIds.join(' '),
    entropies: new Array<number>(tokenIds.length + (eos ? 1 : 0)).fill(0.1),
    timeMs: 0,
  };
}

t.test('lcsF1', async (t) => {
  t.equal(lcsF1([1, 2, 3], [1, 2, 3]), 1);
  t.equal(lcsF1([1, 2, 3, 4], [1, 3]), (2 * 2) / 6);
  t.equal(lcsF1([1], [2]), 0);
  t.equal(lcsF1([], []), 1);
  t.equal(lcsF1([], [1]), 0);
});

t.test('degenerate text: loops and no end of sequence; ordinary sentences pass', async (t) => {
  t.equal(degenerateReason(cand(0, 0, true, [5, 6, 7, 8, 9, 10])), null);
  t.equal(degenerateReason(cand(0, 0, true, [5, 6, 7, 8], 0.1, 0.05, false)), 'no_eos');
  t.equal(degenerateReason(cand(0, 0, true, [1, 2, 3, 4, 1, 2, 3, 1, 2, 3])), 'repetition', 'a 3-token phrase three times');
  t.equal(degenerateReason(cand(0, 0, true, [1, 9, 9, 9, 9, 2])), 'repetition', 'one token four times in a row');
  t.equal(degenerateReason(cand(0, 0, true, [1, 2, 3, 4, 1, 2, 3, 5])), null, 'a phrase twice is ordinary');
});

t.test('consensus: the majority label, then the candidate closest to the others of it', async (t) => {
  const a = [1, 2, 3, 4, 5, 6];
  const near = [1, 2, 3, 4, 5, 7];
  const far = [1, 9, 8, 6];
  const all = [
    cand(0, 0, true, far, 0.01), // the lowest C: min_c takes it
    cand(0, 1, true, a, 0.2),
    cand(0, 2, false, [4, 4, 2], 0.3),
    cand(1, 0, true, near, 0.2),
    cand(1, 1, true, a, 0.3),
    cand(1, 2, false, [4, 2], 0.3),
  ];
  t.match(selectCandidate(all, 'min_c').candidate, { round: 0, trajectory: 0 });
  const s = selectCandidate(all, 'consensus');
  t.match(s.candidate, { round: 1, trajectory: 1 }, 'the medoid of the failure candidates; the tie with (0, 1) goes to the later round');
  t.equal(s.rule, 'consensus');
  t.match(s.reason, /failure held by 4 of 6 candidates/);
  t.ok(s.agreement !== null && s.agreement > 0.6);
});

t.test('consensus: degenerate candidates are left out; a label tie goes to the most certain head', async (t) => {
  const loop = [1, 2, 3, 1, 2, 3, 1, 2, 3];
  const all = [
    cand(0, 0, true, loop, 0.001, 0.001),
    cand(0, 1, true, loop, 0.001, 0.001),
    cand(0, 2, false, [7, 8, 9], 0.2, 0.2),
    cand(1, 0, true, [7, 8, 10], 0.2, 0.1),
  ];
  const s = selectCandidate(all, 'consensus');
  t.match(s.candidate, { round: 1, trajectory: 0 }, 'the tie 1:1 among sound candidates goes to the surer head (failure)');
  t.match(s.reason, /2 degenerate left out/);
  t.match(s.reason, /tie broken by the most certain head/);
  const onlyLoops = selectCandidate(all.slice(0, 2), 'consensus');
  t.match(onlyLoops.candidate, { round: 0, trajectory: 0 }, 'when every candidate is degenerate they all take part');
});

t.test('needs_review reasons', async (t) => {
  const manifest = {
    labels: { names: ['success', 'failure'], threshold: 0.5, calibration_temperature: 2 },
    review: {
      min_confidence: 0.9,
      min_label_agreement: 0.6,
      failure_phrases: ['dropped', 'two items'],
      success_phrases: ['placed inside'],
      novelty: { file: 'review/novelty.json', threshold: 3 },
    },
  } as unknown as ArmorManifest;
  const ok = { ...cand(0, 0, true, [1, 2]), detectionLogit: 10, explanation: 'The box dropped on the floor.' };
  t.same(review(manifest, ok, [ok, ok, ok], 1).reasons, [], 'a sure, agreed, ordinary answer');
  const contradiction = { ...ok, failure: false, label: 'success', detectionLogit: -10, explanation: 'The gripper picked two items at once.' };
  t.same(review(manifest, contradiction, [contradiction], 1).reasons, ['label_contradiction']);
  t.ok(contradicts('The box was placed inside the destination tote.', true, manifest.review!), 'failure with only success words');
  t.notOk(contradicts('The box was placed inside the tote but dropped.', true, manifest.review!));
  const uncertain = { ...ok, detectionLogit: 3 }; // calibrated: sigmoid(3 / 2) = 0.82 < 0.9
  const r = review(manifest, uncertain, [uncertain, { ...ok, failure: false }, { ...ok, failure: false }], 3.5);
  t.same(r.reasons, ['candidates_disagree', 'detection_uncertain', 'unfamiliar_input']);
  t.ok(Math.abs(r.pFailCalibrated - 1 / (1 + Math.exp(-1.5))) < 1e-12, 'the calibration temperature divides the logit');
  t.equal(r.labelAgreement, 1 / 3);
  const loop = { ...ok, tokenIds: [1, 1, 1, 1] };
  t.same(review(manifest, loop, [loop], null).reasons, ['degenerate_explanation'], 'no novelty score: the novelty check is skipped');
});
