export { EpisodeService, hashMedia, isFinalError, type Submission, type SubmitOutcome } from './episodes.js';
export { EpisodeRunner, type RunnerOptions } from './runner.js';
export { EpisodeReview, type FramesImage, type ReviewOptions } from './review.js';
export { MediaRetention } from './retention.js';
export { withStoredMedia, safeFileName } from './stored-media.js';
export { exportEpisodes, type ExportOptions, type ExportSummary, type ManifestLine } from './export.js';
