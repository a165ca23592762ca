// Configuration is validated once at start-up and every bad value names its variable.
import t from 'tap';
import { ConfigError, loadConfig } from '../src/config.js';

t.test('defaults serve the committed bundle on 8080 with the CPU provider', async (t) => {
  const c = loadConfig({});
  t.equal(c.port, 8080);
  t.same(c.providers, ['cpu']);
  t.match(c.bundleDir, /models\/armor-tiny$/);
  t.equal(c.workers, 1);
});

t.test('provider lists, limits and caps parse', async (t) => {
  const c = loadConfig({ ARMOR_PROVIDERS: 'tensorrt, cuda ,cpu', ARMOR_MAX_VIDEO_SECONDS: '5', ARMOR_MAX_TRAJECTORIES: '4' });
  t.same(c.providers, ['tensorrt', 'cuda', 'cpu']);
  t.equal(c.media.maxDurationSec, 5);
  t.equal(c.caps.maxTrajectories, 4);
});

t.test('bad values stop start-up with the variable named', async (t) => {
  t.throws(() => loadConfig({ PORT: 'eighty' }), new ConfigError('PORT=eighty is invalid: expected an integer from 0 to 65535'));
  t.throws(() => loadConfig({ ARMOR_PROVIDERS: 'cuda,tpu' }), { message: /ARMOR_PROVIDERS names tpu/ });
  t.throws(() => loadConfig({ ARMOR_WORKERS: '0' }), { message: /ARMOR_WORKERS=0/ });
  t.throws(() => loadConfig({ LOG_LEVEL: 'loud' }), { message: /LOG_LEVEL=loud/ });
  t.throws(() => loadConfig({ ARMOR_MAX_TRAJECTORIES: '9' }), { message: /ARMOR_MAX_TRAJECTORIES/ });
});
