/**
 * cosi-server's metadata.json size cap: --max-metadata-size and
 * COSI_MAX_METADATA_SIZE, and an archive over the cap listed as invalid with
 * the reason (its size, the cap, the flag) instead of being read whole into
 * memory; raised, the same archive is valid.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig, USAGE } from '../server/config.js';
import { startServer } from '../server/server.js';
import { CosiError } from '../shared/errors.js';
import { packedDisk, SMALL } from './fixtures.js';
import { readParts, writeParts } from './mutants.js';
import { http, json, tempCatalog } from './server-helpers.js';

const work = await mkdtemp(join(tmpdir(), 'cosi-server-cap-'));
after(() => rm(work, { recursive: true, force: true }));
let files: Record<string, string>;

before(async () => {
  const fx = await packedDisk(SMALL);
  const parts = await readParts(fx.cosi);
  // Valid but for its size: 5 MiB of an unknown field readers must ignore.
  parts.meta.padding = 'x'.repeat(5 << 20);
  const big = join(work, 'big.cosi');
  await writeParts(big, parts);
  files = { 'big.cosi': big, 'small.cosi': fx.cosi };
});

function config(args: string[], env: NodeJS.ProcessEnv = {}) {
  const parsed = parseConfig(args, env);
  assert.equal(parsed.help, false);
  return (parsed as { config: { maxMetadataBytes: number } }).config;
}

test('--max-metadata-size and COSI_MAX_METADATA_SIZE: 4 MiB by default, sizes with units, the flag over the variable', () => {
  assert.equal(config([]).maxMetadataBytes, 4 << 20);
  assert.equal(config(['--max-metadata-size', '8M']).maxMetadataBytes, 8 << 20);
  assert.equal(config([], { COSI_MAX_METADATA_SIZE: '16MiB' }).maxMetadataBytes, 16 << 20);
  assert.equal(config(['--max-metadata-size', '65536'], { COSI_MAX_METADATA_SIZE: '16MiB' }).maxMetadataBytes, 65536);
  for (const bad of ['lots', '0', '2G', '-1M']) {
    assert.throws(() => parseConfig([`--max-metadata-size=${bad}`], {}), (e: unknown) => e instanceof CosiError && e.code === 'COSI_ERR_USAGE' && /--max-metadata-size must be a size/.test(e.message), bad);
  }
  assert.match(USAGE, /--max-metadata-size N .*COSI_MAX_METADATA_SIZE/);
});

async function listing(maxMetadataBytes?: number): Promise<Map<string, { valid: boolean; reason?: string }>> {
  const cat = await tempCatalog(files);
  const srv = await startServer({ root: cat.dir, port: 0, host: '127.0.0.1', log: false, rescanSeconds: 0, watch: false, maxMetadataBytes });
  try {
    const body = json(await http(srv.url, '/v1/images'));
    return new Map(body.images.map((i: { id: string; valid: boolean; reason?: string }) => [i.id, i]));
  } finally {
    await srv.close(500);
    await cat.cleanup();
  }
}

test('an archive whose metadata.json is over the cap is listed invalid, with its size, the cap and the flag; raised, it is valid', async () => {
  const capped = await listing();
  assert.equal(capped.get('small')!.valid, true);
  assert.equal(capped.get('big')!.valid, false);
  assert.match(capped.get('big')!.reason!, /metadata\.json is 5\.0 MiB \(\d+ bytes\), over the 4\.0 MiB limit for metadata; if the file is trusted, raise the limit with --max-metadata-size/);
  const raised = await listing(8 << 20);
  assert.equal(raised.get('big')!.valid, true, raised.get('big')!.reason);
});
