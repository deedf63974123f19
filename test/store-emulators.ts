/**
 * The object stores the store tests run against, started on 127.0.0.1 by the
 * tests themselves: s3rver (an S3 protocol server, checks SigV4 signatures of
 * its one account) and Azurite (Microsoft's Azure Storage emulator, checks
 * Shared Key and SAS signatures of its well-known development account). Each
 * runs in a child process of its own, on a port picked per run, with data in
 * a temporary directory; every upload goes through the vendors' SDKs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { REPO } from './fixtures.js';
import { freePort } from './nginx.js';

// The test process uploads with the SDK too; its Node 20 deprecation notice is noise in test output.
process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true';

export const S3_KEY_ID = 'S3RVER';
export const S3_SECRET = 'S3RVER';
export const AZ_ACCOUNT = 'devstoreaccount1';
export const AZ_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

export interface Emulator {
  /** The service endpoint: http://127.0.0.1:PORT (Azurite: with the account path). */
  endpoint: string;
  port: number;
  /** The environment that points the SDKs (and our store URLs) at this emulator. */
  env: NodeJS.ProcessEnv;
  /** Uploads a file as KEY into the bucket/container (created on first use). */
  put(container: string, key: string, file: string | Buffer): Promise<void>;
  kill(): void;
  stop(): Promise<void>;
}

/** A clean environment: no credentials, region or endpoints inherited from the machine, no instance metadata lookups. */
export function baseEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^(AWS_|AZURE_)/.test(k)) env[k] = v;
  env['AWS_EC2_METADATA_DISABLED'] = 'true';
  env['AWS_CONFIG_FILE'] = '/nonexistent/aws-config';
  env['AWS_SHARED_CREDENTIALS_FILE'] = '/nonexistent/aws-credentials';
  return env;
}

async function waitPort(child: ChildProcess, port: number, out: () => string, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`emulator exited (${child.exitCode ?? child.signalCode}): ${out()}`);
    const ok = await fetch(`http://127.0.0.1:${port}/`, { method: 'GET' }).then(
      (r) => (r.body?.cancel(), true),
      () => false,
    );
    if (ok) return;
    await sleep(100);
  }
  child.kill('SIGKILL');
  throw new Error(`emulator on port ${port} did not answer within ${ms} ms: ${out()}`);
}

function stopper(child: ChildProcess, dir: string): () => Promise<void> {
  let done: Promise<void> | undefined;
  return () =>
    (done ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise<void>((r) => child.once('exit', () => r()));
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 3000);
        await exited;
        clearTimeout(t);
      }
      await rm(dir, { recursive: true, force: true });
    })());
}

async function launch(args: (port: number, dir: string) => string[], prefix: string): Promise<{ child: ChildProcess; port: number; dir: string; out: () => string }> {
  for (let attempt = 0; ; attempt++) {
    const dir = await mkdtemp(join(tmpdir(), prefix));
    const port = await freePort();
    let text = '';
    const child = spawn(process.execPath, args(port, dir), { stdio: ['ignore', 'pipe', 'pipe'], cwd: dir });
    child.stdout!.on('data', (d: Buffer) => (text = (text + d.toString()).slice(-4000)));
    child.stderr!.on('data', (d: Buffer) => (text = (text + d.toString()).slice(-4000)));
    try {
      await waitPort(child, port, () => text);
      return { child, port, dir, out: () => text };
    } catch (err) {
      child.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
      // Someone took the port between freePort() and the bind: once more on another.
      if (attempt < 2 && /EADDRINUSE/.test(text)) continue;
      throw err;
    }
  }
}

export async function startS3(): Promise<Emulator> {
  const bin = join(REPO, 'node_modules', 's3rver', 'bin', 's3rver.js');
  // s3rver encrypts ListObjectsV2 continuation tokens with DES, which OpenSSL 3 keeps in its legacy provider:
  // without it every listing that needs a second page fails with 500.
  const { child, port, dir } = await launch((p, d) => ['--openssl-legacy-provider', bin, '-d', d, '-a', '127.0.0.1', '-p', String(p), '--silent', '--no-vhost-buckets'], 'cosi-s3rver-');
  const endpoint = `http://127.0.0.1:${port}`;
  const env = { ...baseEnv(), AWS_ACCESS_KEY_ID: S3_KEY_ID, AWS_SECRET_ACCESS_KEY: S3_SECRET, AWS_REGION: 'us-east-1', AWS_ENDPOINT_URL: endpoint };
  const { S3Client, CreateBucketCommand, PutObjectCommand } = await import('@aws-sdk/client-s3');
  // Checksums only when required: a streamed body otherwise goes up aws-chunked, and s3rver keeps
  // that as the object's Content-Encoding (S3 itself strips it), which no range reader may accept.
  const client = new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: S3_KEY_ID, secretAccessKey: S3_SECRET },
    requestChecksumCalculation: 'WHEN_REQUIRED',
  });
  const made = new Set<string>();
  return {
    endpoint,
    port,
    env,
    async put(bucket, key, file) {
      if (!made.has(bucket)) {
        await client.send(new CreateBucketCommand({ Bucket: bucket })).catch((e: { name?: string }) => {
          if (e.name !== 'BucketAlreadyOwnedByYou' && e.name !== 'BucketAlreadyExists') throw e;
        });
        made.add(bucket);
      }
      // Files are streamed (a bench archive may be larger than we want in memory).
      const body = typeof file === 'string' ? createReadStream(file) : file;
      const length = typeof file === 'string' ? (await stat(file)).size : file.length;
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentLength: length }));
    },
    kill: () => child.kill('SIGKILL'),
    stop: stopper(child, dir),
  };
}

export async function startAzurite(): Promise<Emulator> {
  const bin = join(REPO, 'node_modules', 'azurite', 'dist', 'src', 'blob', 'main.js');
  const { child, port, dir } = await launch(
    (p, d) => [bin, '--blobHost', '127.0.0.1', '--blobPort', String(p), '--location', d, '--silent', '--skipApiVersionCheck', '--loose', '--disableTelemetry'],
    'cosi-azurite-',
  );
  const endpoint = `http://127.0.0.1:${port}/${AZ_ACCOUNT}`;
  const cs = `DefaultEndpointsProtocol=http;AccountName=${AZ_ACCOUNT};AccountKey=${AZ_KEY};BlobEndpoint=${endpoint};`;
  const env = { ...baseEnv(), AZURE_STORAGE_CONNECTION_STRING: cs };
  const { BlobServiceClient } = await import('@azure/storage-blob');
  const service = BlobServiceClient.fromConnectionString(cs);
  const made = new Set<string>();
  return {
    endpoint,
    port,
    env,
    async put(container, key, file) {
      const c = service.getContainerClient(container);
      if (!made.has(container)) {
        await c.createIfNotExists();
        made.add(container);
      }
      if (typeof file === 'string') await c.getBlockBlobClient(key).uploadFile(file);
      else await c.getBlockBlobClient(key).uploadData(file);
    },
    kill: () => child.kill('SIGKILL'),
    stop: stopper(child, dir),
  };
}
