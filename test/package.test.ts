/**
 * The package's public entry points, as a dependent sees them: the library
 * under the package name, shared modules under cosi-stream/shared/FOLDER/NAME
 * (package.json "exports", resolved through the package's self-reference), and
 * the three bins, which must exist, be executable and answer --help.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { accessSync, constants, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { REPO } from './fixtures.js';

// Through a variable: the compiler must not resolve these before dist/ exists.
const load = (specifier: string): Promise<Record<string, any>> => import(specifier);

const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { bin: Record<string, string> };

test('the library API of README resolves by package name', async () => {
  const lib = await load('cosi-stream');
  for (const name of ['openCosi', 'open', 'CosiImage', 'writePartition', 'writeDisk', 'CosiError', 'sequentialPass', 'countingSink']) {
    assert.equal(typeof lib[name], 'function', name);
  }
});

test('shared modules resolve under cosi-stream/shared/FOLDER/NAME', async () => {
  const tar = await load('cosi-stream/shared/format/tar');
  assert.equal(tar.BLOCK, 512);
  const src = await load('cosi-stream/shared/transport/open');
  assert.equal(typeof src.openSource, 'function');
  const errors = await load('cosi-stream/shared/errors');
  assert.equal(new errors.CosiError('COSI_ERR_TAR', 'x').exitCode, 5);
});

test('each bin exists, is executable and prints its usage for --help', () => {
  assert.deepEqual(Object.keys(pkg.bin).sort(), ['cosi-fetch', 'cosi-pack', 'cosi-server']);
  for (const [name, rel] of Object.entries(pkg.bin)) {
    const path = join(REPO, rel);
    accessSync(path, constants.X_OK);
    const r = spawnSync(process.execPath, [path, '--help'], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 0, `${name} --help: ${r.stderr}`);
    assert.match(r.stdout, new RegExp(`usage: ${name}`), name);
  }
});
