/**
 * More user mistakes in words, through the real bins: --tls-cert/--tls-key
 * files that are no PEM pair; an output directory that is missing (one rule
 * and one advice for -o DIR/FILE, -o DIR/ and -o DIR with several
 * partitions) or that exists but takes no files (/proc); an output that is
 * the archive being read; fetch flags given to inspect and verify. One
 * line, the class's exit code, no errno or OpenSSL wording, nothing written.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, test } from 'node:test';
import { failsWith, FETCH_CLI, runBin } from './client-helpers.js';
import { packedDisk, REPO, sh, SMALL, type PackedFixture } from './fixtures.js';

const SERVER_CLI = join(REPO, 'dist', 'server', 'cli.js');
let work: string;
let small: PackedFixture;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'cosi-cli-errors-fetch-'));
  small = await packedDisk(SMALL);
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

const fetch = (args: string[]) => runBin(FETCH_CLI, args, { timeoutMs: 60_000 });
const server = (args: string[]) => runBin(SERVER_CLI, args, { timeoutMs: 30_000, env: { COSI_CACHE_DIR: join(work, 'cache') } });
const sha = async (path: string) => createHash('sha256').update(await readFile(path)).digest('hex');

test('cosi-server: --tls-cert/--tls-key that are not PEM, a key as the certificate, a key of another certificate: usage, one line', async () => {
  const dir = await mkdtemp(join(work, 'tls-'));
  const root = await mkdtemp(join(work, 'root-'));
  const notPem = join(dir, 'notpem');
  await writeFile(notPem, 'this is not a certificate\n');
  const pair = async (name: string) => {
    await sh('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', `/CN=${name}`, '-keyout', join(dir, `${name}.key`), '-out', join(dir, `${name}.crt`)]);
    return { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
  };
  const a = await pair('a');
  const b = await pair('b');
  const tls = (cert: string, key: string) => server(['--root', root, '--port', '0', '--tls-cert', cert, '--tls-key', key]);
  failsWith(await tls(notPem, notPem), 'cosi-server', 2, /--tls-cert .*notpem is not a PEM certificate \(no -----BEGIN CERTIFICATE----- line\); give the certificate in PEM form \(e\.g\. openssl req -x509 /);
  failsWith(await tls(a.key, a.key), 'cosi-server', 2, /--tls-cert .*a\.key is not a PEM certificate/);
  failsWith(await tls(a.cert, notPem), 'cosi-server', 2, /--tls-key .*notpem is not a PEM private key/);
  failsWith(await tls(a.cert, b.key), 'cosi-server', 2, /--tls-key .*b\.key does not belong to the certificate in --tls-cert .*a\.crt; give the key the certificate was made with/);
});

test('cosi-fetch: a missing output directory is one rule (exit 6, mkdir -p advice) for -o DIR/FILE, -o DIR/ and -o DIR with several partitions', async () => {
  const dir = await mkdtemp(join(work, 'nodir-'));
  const advice = (d: string) => new RegExp(`: the directory ${d.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} does not exist; create it first \\(mkdir -p ${d.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}\\)$`);
  const missing = join(dir, 'missing');
  failsWith(await fetch(['-p', 'root', '-o', join(missing, 'root.img'), small.cosi]), 'cosi-fetch', 6, advice(missing));
  failsWith(await fetch(['-p', 'root', '-o', `${missing}/`, small.cosi]), 'cosi-fetch', 6, advice(missing));
  failsWith(await fetch(['--disk', '-o', `${missing}/`, small.cosi]), 'cosi-fetch', 6, advice(missing));
  failsWith(await fetch(['-p', 'root', '-p', 'esp', '-o', missing, small.cosi]), 'cosi-fetch', 6, advice(missing));
  // Several partitions into an existing file is still a usage mistake, not a missing directory.
  const file = join(dir, 'a-file');
  await writeFile(file, 'x');
  failsWith(await fetch(['-p', 'root', '-p', 'esp', '-o', file, small.cosi]), 'cosi-fetch', 2, /several partitions need -o DIR/);
  assert.deepEqual(await readdir(dir), ['a-file'], 'nothing left behind');
});

test('cosi-fetch: -o into a directory that exists but takes no files (/proc) is not called missing', { skip: existsSync('/proc/self') ? false : 'no /proc on this system' }, async () => {
  const r = await fetch(['-p', 'root', '-o', '/proc/x.img', small.cosi]);
  failsWith(r, 'cosi-fetch', 6, /cannot create \/proc\/x\.img: the directory \/proc exists, but its file system does not let files be created there; write the output elsewhere$/);
  assert.doesNotMatch(r.stderr, /does not exist/);
});

test('cosi-fetch: an output that is the archive being read is refused (exit 2) before anything is written', async () => {
  const dir = await mkdtemp(join(work, 'self-'));
  const self = join(dir, 'self.cosi');
  await copyFile(small.cosi, self);
  const before = await sha(self);
  await symlink(self, join(dir, 'link.cosi'));
  await mkdir(join(dir, 'sub'));
  const refused = /-o .* is the archive being read \(.*self\.cosi\); writing it would destroy its own source: give another output path/;
  failsWith(await fetch(['-p', 'root', '-o', self, self]), 'cosi-fetch', 2, refused);
  failsWith(await fetch(['-p', 'root', '-o', join(dir, 'link.cosi'), pathToFileURL(self).href]), 'cosi-fetch', 2, refused);
  failsWith(await fetch(['--disk', '-o', self, join(dir, 'sub', '..', 'self.cosi')]), 'cosi-fetch', 2, refused);
  failsWith(await fetch(['-p', 'root', '--resume', '-o', self, self]), 'cosi-fetch', 2, refused);
  assert.equal(await sha(self), before, 'the archive is untouched');
  assert.deepEqual((await readdir(dir)).sort(), ['link.cosi', 'self.cosi', 'sub'], 'nothing else written');
  // Another output beside it still works.
  const ok = await fetch(['-p', 'root', '-o', join(dir, 'root.img'), self]);
  assert.equal(ok.code, 0, ok.stderr);
});

test('cosi-fetch inspect and verify refuse the flags only a fetch uses, naming the flag', async () => {
  failsWith(await fetch(['inspect', '--partition', 'root', small.cosi]), 'cosi-fetch', 2, /inspect does not take --partition: it selects what to fetch, and inspect writes nothing; drop it.*\(see cosi-fetch inspect --help\)$/);
  failsWith(await fetch(['inspect', '-o', join(work, 'x'), small.cosi]), 'cosi-fetch', 2, /inspect does not take --output:/);
  failsWith(await fetch(['inspect', '--threads', '2', small.cosi]), 'cosi-fetch', 2, /inspect does not take --threads: it decodes no image/);
  failsWith(await fetch(['verify', '--disk', small.cosi]), 'cosi-fetch', 2, /verify does not take --disk:/);
  failsWith(await fetch(['verify', '--grow', small.cosi]), 'cosi-fetch', 2, /verify does not take --grow:/);
  // What they do take still works.
  const ok = await fetch(['inspect', '--json', '-q', small.cosi]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(JSON.parse(ok.stdout).partitions.length > 0, true);
});
