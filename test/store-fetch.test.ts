/**
 * cosi-fetch over object stores: s3:// against s3rver, az:// and the
 * https://ACCOUNT.blob.core.windows.net form against Azurite, both started
 * here on 127.0.0.1. Partitions come out byte-identical to the source disk;
 * bad or missing credentials are one network-class line with no secret in
 * it; a store that resets mid-transfer resumes; an object replaced between
 * open and fetch is refused (exit 4), never spliced.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { open, writePartition } from '../client/index.js';
import { exitCodeOf } from '../shared/errors.js';
import { closeSharedAgents } from '../shared/transport/http/agent.js';
import { FILLED, SMALL, packedDisk, sameBytes, type PackedFixture } from './fixtures.js';
import { errorLine, runFetch } from './client-helpers.js';
import { startFaultProxy } from './fault-proxy.js';
import { AZ_ACCOUNT, AZ_KEY, baseEnv, S3_SECRET, startAzurite, startS3, type Emulator } from './store-emulators.js';

let work: string;
let s3: Emulator;
let az: Emulator;
let small: PackedFixture;
let filled: PackedFixture;
let n = 0;
const fresh = async () => {
  const d = join(work, `out-${n++}`);
  await mkdir(d, { recursive: true });
  return d;
};

async function rootOf(fx: PackedFixture) {
  const img = await open(fx.cosi);
  try {
    return img.select('root');
  } finally {
    await img.close();
  }
}

async function assertRoot(fx: PackedFixture, file: string): Promise<void> {
  const p = await rootOf(fx);
  assert.ok(await sameBytes(file, 0, fx.disk, p.gptPartition!.offset, p.gptPartition!.size), 'root partition differs from the source disk');
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'cosi-store-fetch-'));
  [small, filled, s3, az] = await Promise.all([packedDisk(SMALL), packedDisk(FILLED), startS3(), startAzurite()]);
  for (const e of [s3, az]) {
    await e.put('images', 'os/small.cosi', small.cosi);
    await e.put('images', 'os/filled.cosi', filled.cosi);
  }
});

after(async () => {
  await closeSharedAgents();
  await Promise.all([s3?.stop(), az?.stop()]);
  await rm(work, { recursive: true, force: true });
});

const stores = () => [
  { name: 's3', url: 's3://images/os', env: s3.env },
  { name: 'azure', url: 'az://images/os', env: az.env },
  { name: 'azure https', url: `https://${AZ_ACCOUNT}.blob.core.windows.net/images/os`, env: az.env },
];

describe('cosi-fetch reads store URLs', () => {
  for (const i of [0, 1, 2]) {
    test(`partition and inspect over ${['s3://', 'az://', 'https blob URL'][i]}`, async () => {
      const st = stores()[i]!;
      const dir = await fresh();
      const r = await runFetch(['-p', 'root', '-o', join(dir, 'root.img'), '--json', `${st.url}/filled.cosi`], { env: st.env });
      assert.equal(r.code, 0, r.stderr);
      await assertRoot(filled, join(dir, 'root.img'));
      assert.equal(r.stderr, '', 'nothing on stderr (no SDK warnings)');
      const ins = await runFetch(['inspect', '--json', `${st.url}/small.cosi`], { env: st.env });
      assert.equal(ins.code, 0, ins.stderr);
      assert.match(ins.stdout, /"partitions"/);
    });
  }
});

describe('credentials', () => {
  const SECRET_MARK = 'NotTheRightSecretXYZ123456789';
  test('s3: an unknown access key is one network-class line, without the secret', async () => {
    const env = { ...s3.env, AWS_ACCESS_KEY_ID: 'NOSUCHKEYID', AWS_SECRET_ACCESS_KEY: SECRET_MARK };
    const r = await runFetch(['-p', 'root', '-o', join(await fresh(), 'r.img'), '--retries', '1', 's3://images/os/small.cosi'], { env });
    assert.equal(r.code, 3, r.stderr);
    assert.match(errorLine(r), /^cosi-fetch: error: s3:\/\/images\/os\/small\.cosi: access denied \(HTTP 403\): check AWS_ACCESS_KEY_ID/);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.ok(!r.stderr.includes(SECRET_MARK) && !r.stdout.includes(SECRET_MARK));
    assert.ok(!r.stderr.includes(S3_SECRET + '&') && !/X-Amz-Signature/i.test(r.stderr));
  });

  test('s3: no credentials anywhere reads unsigned (public objects), path-style on a custom endpoint', async () => {
    // s3rver enforces no ACLs, so this shows the unsigned path works; refusals are shown on Azurite below.
    const env = { ...baseEnv(), AWS_ENDPOINT_URL: s3.endpoint };
    const dir = await fresh();
    const r = await runFetch(['-p', 'root', '-o', join(dir, 'root.img'), 's3://images/os/small.cosi'], { env });
    assert.equal(r.code, 0, r.stderr);
    await assertRoot(small, join(dir, 'root.img'));
  });

  test('azure: a wrong account key is refused by the store (403), the key never shown', async () => {
    const wrongKey = Buffer.from(SECRET_MARK.repeat(2)).toString('base64');
    const env = { ...az.env, AZURE_STORAGE_CONNECTION_STRING: az.env['AZURE_STORAGE_CONNECTION_STRING']!.replace(AZ_KEY, wrongKey) };
    const r = await runFetch(['inspect', '--retries', '1', 'az://images/os/small.cosi'], { env });
    assert.equal(r.code, 3, r.stderr);
    assert.match(errorLine(r), /az:\/\/images\/os\/small\.cosi: access denied \(HTTP 403\): check AZURE_STORAGE_CONNECTION_STRING/);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    for (const s of [wrongKey, AZ_KEY, 'sig=']) assert.ok(!r.stderr.includes(s) && !r.stdout.includes(s), `${s} leaked`);
  });

  test('azure: no account configured is a usage error naming the variables', async () => {
    const r = await runFetch(['inspect', 'az://images/os/small.cosi'], { env: baseEnv() });
    assert.equal(r.code, 2, r.stderr);
    assert.match(errorLine(r), /no storage account: set AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_ACCOUNT/);
  });

  test('azure: a private container without credentials is refused; a public one reads anonymously', async () => {
    const anon = { ...baseEnv(), AZURE_STORAGE_CONNECTION_STRING: `AccountName=${AZ_ACCOUNT};BlobEndpoint=${az.endpoint};` };
    const denied = await runFetch(['inspect', '--retries', '0', 'az://images/os/small.cosi'], { env: anon });
    assert.equal(denied.code, 3, denied.stderr);
    assert.match(errorLine(denied), /az:\/\/images\/os\/small\.cosi: (access denied|no such object)/);
    const { BlobServiceClient } = await import('@azure/storage-blob');
    const pub = BlobServiceClient.fromConnectionString(az.env['AZURE_STORAGE_CONNECTION_STRING']!).getContainerClient('public');
    await pub.createIfNotExists({ access: 'blob' });
    await pub.getBlockBlobClient('small.cosi').uploadFile(small.cosi);
    const dir = await fresh();
    const ok = await runFetch(['-p', 'root', '-o', join(dir, 'root.img'), 'az://public/small.cosi'], { env: anon });
    assert.equal(ok.code, 0, ok.stderr);
    await assertRoot(small, join(dir, 'root.img'));
  });
});

describe('faults', () => {
  for (const kind of ['s3', 'azure'] as const) {
    test(`${kind}: a store that resets mid-transfer is resumed`, async () => {
      const e = kind === 's3' ? s3 : az;
      const proxy = await startFaultProxy({ host: '127.0.0.1', port: e.port }, (i) => (i === 0 ? { kind: 'reset', afterBytes: 300_000 } : { kind: 'pass' }));
      try {
        const env =
          kind === 's3'
            ? { ...e.env, AWS_ENDPOINT_URL: proxy.url }
            : { ...e.env, AZURE_STORAGE_CONNECTION_STRING: e.env['AZURE_STORAGE_CONNECTION_STRING']!.replace(e.endpoint, `${proxy.url}/${AZ_ACCOUNT}`) };
        const url = kind === 's3' ? 's3://images/os/filled.cosi' : 'az://images/os/filled.cosi';
        const dir = await fresh();
        // The first connection carries the opening reads and then the partition (keep-alive), and is reset inside it.
        const r = await runFetch(['-p', 'root', '-o', join(dir, 'root.img'), '--json', url], { env });
        assert.equal(r.code, 0, r.stderr);
        assert.ok(proxy.connections >= 2, `the transfer was not resumed on a new connection: ${proxy.applied.join(',')}`);
        await assertRoot(filled, join(dir, 'root.img'));
      } finally {
        await proxy.stop();
      }
    });

    test(`${kind}: an object replaced between open and fetch is refused (exit 4), nothing written`, async () => {
      const e = kind === 's3' ? s3 : az;
      await e.put('moving', 'a.cosi', filled.cosi);
      const url = kind === 's3' ? 's3://moving/a.cosi' : 'az://moving/a.cosi';
      const saved = { ...process.env };
      Object.assign(process.env, e.env);
      try {
        const img = await open(url);
        try {
          await e.put('moving', 'a.cosi', small.cosi);
          const dir = await mkdtemp(join(work, 'moved-'));
          const err = await writePartition(img, img.select('root'), join(dir, 'root.img')).then(
            () => undefined,
            (x: unknown) => x,
          );
          assert.ok(err, 'the fetch of a replaced object succeeded');
          assert.equal((err as { code?: string }).code, 'COSI_ERR_SOURCE_CHANGED', String(err));
          assert.equal(exitCodeOf(err), 4);
          assert.deepEqual(await readdir(dir), []);
        } finally {
          await img.close();
        }
      } finally {
        for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
        Object.assign(process.env, saved);
      }
    });
  }
});
