// Writes openapi.yaml, the OpenAPI document the server generates from its route schemas, for
// readers of the repository (test/openapi.test.ts fails when the committed copy differs).
//   npm run openapi
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { REPO_ROOT } from '../../src/config.js';
import { startTestServer } from './test-server.js';

const server = await startTestServer();
try {
  await writeFile(path.join(REPO_ROOT, 'openapi.yaml'), server.app.swagger({ yaml: true }));
  console.log('openapi.yaml written');
} finally {
  await server.close();
}
