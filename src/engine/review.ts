// When an answer should not be trusted without a person looking (the response's needs_review).
// Each reason is cheap, computed from the trace and the bundle's review settings, and named so
// an operator can filter on it.
import type { ArmorManifest, ReviewSettings } from '../runtime/manifest.js';
import { sigmoid } from './sampling.js';
import { degenerateReason } from './selection.js';
import type { Candidate } from './types.js';

export type ReviewReason =
  /** The answer's text is a repetition loop or never ended (max_new_tokens reached). */
  | 'degenerate_explanation'
  /** The explanation describes the other label (a failure under "success", or the reverse). */
  | 'label_contradiction'
  /** Too few of the candidates agree with the answer's label. */
  | 'candidates_disagree'
  /** The calibrated probability of the answer's label is below the bundle's floor. */
  | 'detection_uncertain'
  /** The input's vision features are far from the training data's (novelty score above the threshold). */
  | 'unfamiliar_input';

export const REVIEW_REASONS: readonly ReviewReason[] = ['degenerate_explanation', 'label_contradiction', 'candidates_disagree', 'detection_uncertain', 'unfamiliar_input'];

/** Used when a bundle has no review section: only the text and agreement checks, on generic thresholds. */
export const DEFAULT_REVIEW: ReviewSettings = { min_confidence: 0.8, min_label_agreement: 0.6 };

/** p_fail with the bundle's calibration temperature applied to the head's logit (labels.calibration_temperature). */
export function calibratedPFail(manifest: ArmorManifest, detectionLogit: number): number {
  return sigmoid(detectionLogit / (manifest.labels.calibration_temperature ?? 1));
}

const phraseHit = (text: string, phrases: readonly string[] | undefined) => {
  const lower = text.toLowerCase();
  return (phrases ?? []).some((p) => lower.includes(p));
};

/** The explanation says the other label: a failure phrase under success, or only success phrases under failure. */
export function contradicts(explanation: string, failure: boolean, settings: ReviewSettings): boolean {
  const saysFailure = phraseHit(explanation, settings.failure_phrases);
  const saysSuccess = phraseHit(explanation, settings.success_phrases);
  return failure ? saysSuccess && !saysFailure : saysFailure;
}

export function review(
  manifest: ArmorManifest,
  selected: Candidate,
  candidates: readonly Candidate[],
  novelty: number | null,
): { needsReview: boolean; reasons: ReviewReason[]; pFailCalibrated: number; novelty: number | null; labelAgreement: number } {
  const settings = manifest.review ?? DEFAULT_REVIEW;
  const reasons: ReviewReason[] = [];
  const pFailCalibrated = calibratedPFail(manifest, selected.detectionLogit);
  if (degenerateReason(selected) !== null) reasons.push('degenerate_explanation');
  if (contradicts(selected.explanation, selected.failure, settings)) reasons.push('label_contradiction');
  const labelAgreement = candidates.filter((c) => c.failure === selected.failure).length / candidates.length;
  if (labelAgreement < settings.min_label_agreement) reasons.push('candidates_disagree');
  if (Math.max(pFailCalibrated, 1 - pFailCalibrated) < settings.min_confidence) reasons.push('detection_uncertain');
  if (novelty !== null && settings.novelty && novelty > settings.novelty.threshold) reasons.push('unfamiliar_input');
  return { needsReview: reasons.length > 0, reasons, pFailCalibrated, novelty, labelAgreement };
}
