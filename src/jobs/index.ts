export { EpisodeService, hashMedia, isFinalError, type Submission, type SubmitOutcome } from './episodes.js';
export { EpisodeRunner, type RunnerOptions } from './runner.js';
