// The blob store on both backends: a directory, and S3 against a real S3-protocol server on
// loopback (s3rver, in its own process; the AWS SDK unmocked, SigV4-signed). Bytes round-trip,
// a commit is idempotent, a damaged blob is caught when read, a store that is down says so.
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { text } from 'node:stream/consumers';
import t from 'tap';
import { BlobIntegrityError, BlobStoreUnavailableError, FsBlobStore, S3BlobStore, stageStream, sweepStaging, type BlobStore } from '../src/blobs/index.js';
import { S3_CREDENTIALS, startS3 } from './support/s3.js';

const dir = await mkdtemp(path.join(os.tmpdir(), 'armor-blobs-test-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));
for (const [k, v] of Object.entries(S3_CREDENTIALS)) process.env[k] = v;
const s3 = await startS3(path.join(dir, 's3rver'));
t.teardown(() => s3.stop());

const s3Store = (prefix = 'armor-serve/media/') =>
  new S3BlobStore({ bucket: s3.bucket, prefix, region: 'us-east-1', endpoint: s3.endpoint, forcePathStyle: true, requestTimeoutMs: 3000, stagingDir: path.join(dir, 's3-staging') });

const backends: Array<[string, () => Promise<BlobStore>]> = [
  ['fs', () => FsBlobStore.open(path.join(dir, 'fs'))],
  ['s3', async () => s3Store()],
];

async function stage(blobs: BlobStore, bytes: Uint8Array) {
  // In uneven chunks, as a multipart parser hands them over.
  const chunks = [bytes.subarray(0, 7), bytes.subarray(7, 70_001), bytes.subarray(70_001)];
  return stageStream(chunks, blobs.stagingDir);
}

for (const [name, open] of backends) {
  t.test(name, async (t) => {
    const blobs = await open();
    t.teardown(() => blobs.close());
    const bytes = new Uint8Array(randomBytes(5 * 1024 * 1024 + 3));
    const staged = await stage(blobs, bytes);
    t.equal(staged.size, bytes.length);
    t.match(staged.sha256, /^[0-9a-f]{64}$/);
    t.equal(await blobs.has(staged.sha256), false, 'not stored before the commit');
    const local = await blobs.commit(staged);
    t.same(await readFile(local.path), Buffer.from(bytes), 'the committed blob is a local file for a synchronous run');
    await local.release();
    t.equal(await blobs.has(staged.sha256), true);
    t.same((await readdir(blobs.stagingDir)).filter((f) => f.endsWith('.part')), [], 'no staging file is left');

    // Read back as a stream, and as a local file (a copy where the store is remote).
    const chunks: Buffer[] = [];
    for await (const c of await blobs.read(staged.sha256)) chunks.push(c as Buffer);
    t.ok(Buffer.concat(chunks).equals(Buffer.from(bytes)), '5 MB round-trip byte for byte (the SDK checksum settings pinned)');
    const copy = await blobs.local(staged.sha256, path.join(dir, `${name}-tmp`));
    t.ok((await readFile(copy.path)).equals(Buffer.from(bytes)));
    await copy.release();

    // The same bytes again (another episode's upload): kept, not duplicated.
    const again = await stage(blobs, bytes);
    t.equal(again.sha256, staged.sha256);
    await (await blobs.commit(again)).release();

    await t.rejects(blobs.read('0'.repeat(64)), BlobIntegrityError, 'a missing blob is an integrity error, not a 5xx from the store');
    await blobs.delete(staged.sha256);
    t.equal(await blobs.has(staged.sha256), false);
    await blobs.delete(staged.sha256); // a missing one is not an error
    await t.resolves(blobs.check(), 'reachable');
  });
}

t.test('fs: a blob damaged on disk fails its read; the upload of the same bytes replaces it', async (t) => {
  const blobs = await FsBlobStore.open(path.join(dir, 'fs-damage'));
  const staged = await stage(blobs, new Uint8Array(randomBytes(1000)));
  await (await blobs.commit(staged)).release();
  await writeFile(blobs.pathOf(staged.sha256), 'not the bytes');
  await t.rejects(text(await blobs.read(staged.sha256)), BlobIntegrityError);
});

t.test('s3: a blob damaged in the bucket fails its read', async (t) => {
  const blobs = s3Store('damage/');
  const staged = await stage(blobs, new Uint8Array(randomBytes(1000)));
  await (await blobs.commit(staged)).release();
  // Overwrite the object behind the store's back (another writer, bit rot).
  const liar = s3Store('damage/');
  const fake = await stageStream([Buffer.from('other bytes')], liar.stagingDir);
  await (await liar.commit({ ...fake, sha256: staged.sha256 })).release();
  await t.rejects(text(await blobs.read(staged.sha256)), BlobIntegrityError);
  await t.rejects(blobs.local(staged.sha256, path.join(dir, 's3-tmp')), BlobIntegrityError);
  t.same((await readdir(path.join(dir, 's3-tmp', 'blobs')).catch(() => [])).filter((f) => f.endsWith('.part')), [], 'the bad copy is not left behind');
});

t.test('s3: a store that is down is unavailable (503), not an error of the upload', async (t) => {
  const blobs = s3Store();
  await s3.kill();
  t.teardown(() => s3.restart()); // should an assertion below throw
  const staged = await stage(blobs, new Uint8Array(randomBytes(100)));
  await t.rejects(blobs.commit(staged), BlobStoreUnavailableError);
  t.same((await readdir(blobs.stagingDir)).filter((f) => f.endsWith('.part')), [], 'the staged file is removed');
  await t.rejects(blobs.check(), { code: 'blob_store_unavailable', statusCode: 503 });
  await t.rejects(blobs.read('1'.repeat(64)), BlobStoreUnavailableError);
  await s3.restart();
  await t.resolves(blobs.check(), 'back');
});

t.test('staging: refused chunks leave no file; stale files are swept', async (t) => {
  const staging = path.join(dir, 'staging');
  await t.rejects(
    stageStream([Buffer.from('abc'), Buffer.from('def')], staging, {
      inspect: (c) => {
        if (c.toString() === 'def') throw new Error('refused');
      },
    }),
    { message: 'refused' },
  );
  t.same(await readdir(staging), [], 'the partial file went with the refusal');
  await writeFile(path.join(staging, 'left-by-a-crash.part'), 'x');
  t.equal(await sweepStaging(staging, 60_000), 0, 'a young staging file is left alone (another upload may own it)');
  t.equal(await sweepStaging(staging, 0), 1, 'swept once nothing can own it');
});
