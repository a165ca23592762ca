export { checkSecret, endpointWants, EVENT_TYPES, parseEndpointsFile, parseSchedule, singleEndpoint, WebhookConfigError } from './endpoints.js';
export type { EventType, WebhookEndpoint } from './endpoints.js';
export { outcomeMessage, newMessageId } from './events.js';
export { retryAfterMs, WebhookDispatcher, type DispatcherOptions } from './dispatcher.js';
