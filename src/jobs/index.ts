export { EpisodeService, backlogFull, isFinalError, mediaIdentity, type Submission, type SubmitOutcome, type Upload, type UploadFile } from './episodes.js';
export { EpisodeRunner, type RunnerOptions } from './runner.js';
export { EpisodeReview, type ReviewOptions } from './review.js';
export { FramesRenderer, type FramesImage, type FramesOptions } from './frames.js';
export { MediaRetention } from './retention.js';
export { withStoredMedia, withLocalBlobs, safeFileName, mediaOf } from './stored-media.js';
export { exportEpisodes, type ExportOptions, type ExportSummary, type ManifestLine } from './export.js';
export { moveLegacyMedia, openMedia, type OpenedMedia } from './media-store.js';
