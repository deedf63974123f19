/**
 * Azure Blob Storage through @azure/storage-blob (loaded on first use).
 * The account comes from AZURE_STORAGE_CONNECTION_STRING (AccountName,
 * AccountKey or SharedAccessSignature, BlobEndpoint for an emulator or a
 * sovereign cloud), else AZURE_STORAGE_ACCOUNT with AZURE_STORAGE_KEY or
 * AZURE_STORAGE_SAS_TOKEN (the Azure CLI's variables). A key signs a
 * short-lived read-only SAS per object; a SAS token is appended as given;
 * no credentials read public containers anonymously.
 */
import { CosiError } from '../../errors.js';
import { CREDENTIAL_HINT, storeFailure, type StoreBackend, type StoreObject } from './backend.js';

type AzureModule = typeof import('@azure/storage-blob');

interface Account {
  name: string;
  /** The blob service endpoint, without a trailing slash. */
  endpoint: string;
  key?: string;
  sas?: string;
}

function parseConnectionString(cs: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of cs.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0) out[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
  }
  return out;
}

const DEV_ACCOUNT = 'devstoreaccount1';
// Azurite's well-known development key (published in Microsoft's documentation; not a secret).
const DEV_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

/** The account the environment describes, if any; `wanted` is the account an https URL names. */
export function accountFromEnv(env: NodeJS.ProcessEnv, wanted?: string): Account | undefined {
  const cs = env['AZURE_STORAGE_CONNECTION_STRING'];
  if (cs) {
    const f = parseConnectionString(cs);
    if (f['UseDevelopmentStorage']?.toLowerCase() === 'true') {
      return { name: DEV_ACCOUNT, endpoint: `http://127.0.0.1:10000/${DEV_ACCOUNT}`, key: DEV_KEY };
    }
    const name = f['AccountName'];
    const endpoint = f['BlobEndpoint'] ?? (name ? `${f['DefaultEndpointsProtocol'] ?? 'https'}://${name}.blob.${f['EndpointSuffix'] ?? 'core.windows.net'}` : undefined);
    if (!endpoint) throw new CosiError('COSI_ERR_USAGE', 'AZURE_STORAGE_CONNECTION_STRING has neither AccountName nor BlobEndpoint');
    const acct: Account = { name: name ?? new URL(endpoint).hostname.split('.')[0]!, endpoint: endpoint.replace(/\/+$/, '') };
    if (f['AccountKey']) acct.key = f['AccountKey'];
    if (f['SharedAccessSignature']) acct.sas = f['SharedAccessSignature'].replace(/^\?/, '');
    if (!wanted || wanted === acct.name.toLowerCase()) return acct;
  }
  const name = env['AZURE_STORAGE_ACCOUNT'];
  if (name && (!wanted || wanted === name.toLowerCase())) {
    const acct: Account = { name, endpoint: `https://${name}.blob.core.windows.net` };
    if (env['AZURE_STORAGE_KEY']) acct.key = env['AZURE_STORAGE_KEY'];
    else if (env['AZURE_STORAGE_SAS_TOKEN']) acct.sas = env['AZURE_STORAGE_SAS_TOKEN'].replace(/^\?/, '');
    return acct;
  }
  return wanted ? { name: wanted, endpoint: `https://${wanted}.blob.core.windows.net` } : undefined;
}

interface RestErrorLike {
  statusCode?: number;
  code?: string;
  details?: { errorCode?: string };
}

function failure(err: unknown, what: string): Error {
  const e = (err ?? {}) as RestErrorLike;
  return storeFailure(err, what, e.statusCode, e.details?.errorCode ?? e.code, CREDENTIAL_HINT.azure);
}

function encodeKey(key: string): string {
  return key.split('/').map(encodeURIComponent).join('/');
}

export class AzureBackend implements StoreBackend {
  listRequests = 0;
  readonly signed: boolean;

  private constructor(
    private readonly sdk: AzureModule,
    private readonly acct: Account,
    private readonly container: string,
  ) {
    this.signed = acct.key !== undefined || acct.sas !== undefined;
  }

  static async create(container: string, account: string | undefined, env: NodeJS.ProcessEnv = process.env): Promise<AzureBackend> {
    const acct = accountFromEnv(env, account);
    if (!acct) {
      throw new CosiError('COSI_ERR_USAGE', `az://${container}: no storage account: set AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_ACCOUNT, or use https://ACCOUNT.blob.core.windows.net/${container}/...`);
    }
    return new AzureBackend(await import('@azure/storage-blob'), acct, container);
  }

  private display(key: string): string {
    return `az://${this.container}/${encodeKey(key)}`;
  }

  async signedUrl(key: string, ttlSeconds: number): Promise<string> {
    const url = `${this.acct.endpoint}/${this.container}/${encodeKey(key)}`;
    if (this.acct.sas) return `${url}?${this.acct.sas}`;
    if (!this.acct.key) return url;
    try {
      const cred = new this.sdk.StorageSharedKeyCredential(this.acct.name, this.acct.key);
      const now = Date.now();
      const sas = this.sdk.generateBlobSASQueryParameters(
        {
          containerName: this.container,
          blobName: key,
          permissions: this.sdk.BlobSASPermissions.parse('r'),
          // Clock skew between us and the store: valid from a little before now.
          startsOn: new Date(now - 5 * 60_000),
          expiresOn: new Date(now + ttlSeconds * 1000),
          protocol: this.acct.endpoint.startsWith('https:') ? this.sdk.SASProtocol.Https : this.sdk.SASProtocol.HttpsAndHttp,
        },
        cred,
      );
      return `${url}?${sas.toString()}`;
    } catch (err) {
      // A malformed key (not base64) fails here, before any request.
      throw failure(err, `${this.display(key)}: cannot sign a read URL (is the account key right?)`);
    }
  }

  async *list(prefix: string, pageSize = 5000): AsyncGenerator<StoreObject> {
    const sdk = this.sdk;
    const base = `${this.acct.endpoint}/${this.container}${this.acct.sas ? `?${this.acct.sas}` : ''}`;
    const options = { retryOptions: { maxTries: 3, retryDelayInMs: 300, maxRetryDelayInMs: 3000, tryTimeoutInMs: 30_000 } };
    let client: import('@azure/storage-blob').ContainerClient;
    try {
      client = this.acct.key ? new sdk.ContainerClient(base, new sdk.StorageSharedKeyCredential(this.acct.name, this.acct.key), options) : new sdk.ContainerClient(base, new sdk.AnonymousCredential(), options);
    } catch (err) {
      throw failure(err, `${this.display(prefix)}: bad account settings`);
    }
    const pages = client.listBlobsFlat(prefix ? { prefix } : {}).byPage({ maxPageSize: pageSize });
    for (;;) {
      let page: IteratorResult<import('@azure/storage-blob').ContainerListBlobFlatSegmentResponse>;
      try {
        page = await pages.next();
      } catch (err) {
        throw failure(err, `${this.display(prefix)}: listing failed`);
      }
      // The iterator's last next() only says it is done: no request behind it.
      if (page.done) return;
      this.listRequests++;
      for (const b of page.value.segment.blobItems) {
        const size = b.properties.contentLength;
        if (size === undefined || !b.properties.etag) continue;
        const etag = b.properties.etag.startsWith('"') ? b.properties.etag : `"${b.properties.etag}"`;
        yield { key: b.name, size, etag, lastModified: b.properties.lastModified };
      }
    }
  }
}
