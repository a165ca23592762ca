// Upload directories left by a killed process are swept at start-up; fresh ones are kept.
import { mkdir, mkdtemp, readdir, rm, utimes } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { sweepStaleUploads } from '../src/server/ingest.js';

t.test('stale upload directories are removed, fresh ones and other files kept', async (t) => {
  const root = await mkdtemp(path.join(os.tmpdir(), 'armor-sweep-test-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  for (const name of ['episode-old', 'episode-new', 'other-old']) await mkdir(path.join(root, name));
  const twoHoursAgo = new Date(Date.now() - 2 * 3600_000);
  await utimes(path.join(root, 'episode-old'), twoHoursAgo, twoHoursAgo);
  await utimes(path.join(root, 'other-old'), twoHoursAgo, twoHoursAgo);
  t.equal(await sweepStaleUploads(root), 1);
  t.same((await readdir(root)).sort(), ['episode-new', 'other-old']);
  t.equal(await sweepStaleUploads(path.join(root, 'missing')), 0, 'a missing directory is not an error');
});
