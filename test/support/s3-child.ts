// An S3-protocol server (s3rver, @20minutes' maintained fork) as its own process, so a test can
// kill it (SIGKILL: the object store is down, connections and all) and start it again on the
// same port and directory. Usage: node s3-child.js DIR PORT BUCKET; prints "listening PORT".
import S3rver from '@20minutes/s3rver';

const [directory, port, bucket] = process.argv.slice(2);
const server = new S3rver({ address: '127.0.0.1', port: Number(port), silent: true, directory, configureBuckets: [{ name: bucket }] });
const address = await server.run();
process.stdout.write(`listening ${address.port}\n`);
