/**
 * S3 and S3-compatible stores through the AWS SDK (loaded on first use).
 * Credentials and region come from the SDK's own chain (AWS_ACCESS_KEY_ID,
 * AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_PROFILE, the shared config
 * files, instance roles); AWS_ENDPOINT_URL(_S3) names an S3-compatible
 * store, which is addressed path-style unless AWS_S3_FORCE_PATH_STYLE=false.
 * Without credentials, objects are read unsigned (public buckets).
 */
import { CREDENTIAL_HINT, storeFailure, type StoreBackend, type StoreObject } from './backend.js';

type S3Module = typeof import('@aws-sdk/client-s3');

interface SdkError {
  name?: string;
  Code?: string;
  $metadata?: { httpStatusCode?: number };
  $response?: { statusCode?: number };
}

function failure(err: unknown, what: string): Error {
  const e = (err ?? {}) as SdkError;
  const status = e.$metadata?.httpStatusCode ?? e.$response?.statusCode;
  return storeFailure(err, what, status, e.Code ?? e.name, CREDENTIAL_HINT.s3);
}

function endpointFromEnv(env: NodeJS.ProcessEnv): string | undefined {
  return env['AWS_ENDPOINT_URL_S3'] || env['AWS_ENDPOINT_URL'] || undefined;
}

/** Path-style for a custom endpoint (most S3-compatible stores want it), virtual-hosted for AWS. */
function pathStyle(env: NodeJS.ProcessEnv): boolean {
  const forced = env['AWS_S3_FORCE_PATH_STYLE']?.toLowerCase();
  if (forced === 'true' || forced === '1') return true;
  if (forced === 'false' || forced === '0') return false;
  return endpointFromEnv(env) !== undefined;
}

function encodeKey(key: string): string {
  return key.split('/').map(encodeURIComponent).join('/');
}

export class S3Backend implements StoreBackend {
  listRequests = 0;
  signed = true;

  private constructor(
    private readonly sdk: S3Module,
    private readonly presign: typeof import('@aws-sdk/s3-request-presigner').getSignedUrl,
    private readonly client: import('@aws-sdk/client-s3').S3Client,
    private readonly bucket: string,
    private readonly region: string,
    private readonly endpoint: string | undefined,
    private readonly forcePathStyle: boolean,
  ) {}

  static async create(bucket: string, env: NodeJS.ProcessEnv = process.env): Promise<S3Backend> {
    // The SDK warns on stderr, once per process, that its 2027 releases will need Node 22: not our users' concern.
    process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true';
    const [sdk, presigner] = await Promise.all([import('@aws-sdk/client-s3'), import('@aws-sdk/s3-request-presigner')]);
    const endpoint = endpointFromEnv(env);
    const forcePathStyle = pathStyle(env);
    const base = { forcePathStyle, ...(endpoint ? { endpoint } : {}), maxAttempts: 3 };
    let region = env['AWS_REGION'] || env['AWS_DEFAULT_REGION'] || undefined;
    if (!region) {
      // The profile may name one; a store that does not care about regions gets the SDK's usual default.
      region = await new sdk.S3Client(base).config.region().catch(() => undefined);
      region ||= 'us-east-1';
    }
    let client = new sdk.S3Client({ ...base, region });
    let signed = true;
    try {
      await client.config.credentials();
    } catch {
      // No credentials anywhere in the chain: read public objects unsigned.
      signed = false;
      client = new sdk.S3Client({ ...base, region, credentials: { accessKeyId: '', secretAccessKey: '' }, signer: { sign: async (req) => req } });
    }
    const b = new S3Backend(sdk, presigner.getSignedUrl, client, bucket, region, endpoint, forcePathStyle);
    b.signed = signed;
    return b;
  }

  async signedUrl(key: string, ttlSeconds: number): Promise<string> {
    if (!this.signed) return this.plainUrl(key);
    try {
      return await this.presign(this.client, new this.sdk.GetObjectCommand({ Bucket: this.bucket, Key: key }), { expiresIn: ttlSeconds });
    } catch (err) {
      throw failure(err, `s3://${this.bucket}/${encodeKey(key)}: cannot sign a read URL`);
    }
  }

  private plainUrl(key: string): string {
    const k = encodeKey(key);
    if (this.endpoint) {
      const e = new URL(this.endpoint);
      const path = e.pathname.replace(/\/+$/, '');
      return this.forcePathStyle ? `${e.origin}${path}/${this.bucket}/${k}` : `${e.protocol}//${this.bucket}.${e.host}${path}/${k}`;
    }
    // Dotted bucket names do not fit the wildcard certificate: path-style for those.
    return this.bucket.includes('.') || this.forcePathStyle
      ? `https://s3.${this.region}.amazonaws.com/${this.bucket}/${k}`
      : `https://${this.bucket}.s3.${this.region}.amazonaws.com/${k}`;
  }

  async *list(prefix: string, pageSize?: number): AsyncGenerator<StoreObject> {
    let token: string | undefined;
    do {
      let page: import('@aws-sdk/client-s3').ListObjectsV2CommandOutput;
      try {
        this.listRequests++;
        page = await this.client.send(new this.sdk.ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix || undefined, ContinuationToken: token, MaxKeys: pageSize }));
      } catch (err) {
        throw failure(err, `s3://${this.bucket}/${encodeKey(prefix)}: listing failed`);
      }
      for (const o of page.Contents ?? []) {
        if (o.Key === undefined || o.Size === undefined || !o.ETag) continue;
        yield { key: o.Key, size: o.Size, etag: o.ETag.startsWith('"') ? o.ETag : `"${o.ETag}"`, lastModified: o.LastModified };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }
}
