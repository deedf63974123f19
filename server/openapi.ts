/**
 * The OpenAPI 3.1 description of the HTTP API, served at /openapi.json.
 * Written by hand next to the routes (test/server-openapi.test.ts holds the
 * two together: every registered route is described, every described path
 * answers, and real responses validate against these schemas).
 *
 * Ids and relative paths may contain '/': OpenAPI path parameters cannot
 * say so, so their descriptions do, and clients must not percent-encode the
 * slashes of an id.
 */

type Json = Record<string, unknown>;

const ref = (kind: 'schemas' | 'parameters' | 'headers' | 'responses', name: string): Json => ({ $ref: `#/components/${kind}/${name}` });
const sha384Hex = { type: 'string', pattern: '^[0-9a-f]{96}$' };
const count = { type: 'integer', minimum: 0 };

const issue = {
  type: 'object',
  required: ['field', 'rule', 'message'],
  additionalProperties: false,
  properties: { field: { type: 'string' }, rule: { type: 'string' }, message: { type: 'string' } },
};

const schemas: Record<string, Json> = {
  Error: {
    type: 'object',
    required: ['error'],
    additionalProperties: false,
    properties: {
      error: {
        type: 'object',
        required: ['code', 'message'],
        additionalProperties: false,
        properties: {
          code: { type: 'string', description: 'NOT_FOUND, UNAUTHORIZED, METHOD_NOT_ALLOWED, RANGE_NOT_SATISFIABLE, BUSY, NOT_CONFIGURED, BAD_REQUEST, FORBIDDEN, PRECONDITION_FAILED, INTERNAL, or a COSI_ERR_* code' },
          message: { type: 'string', description: 'One line, for people.' },
        },
      },
    },
  },
  Issue: issue,
  Partition: {
    type: 'object',
    required: ['selector', 'path', 'role', 'compressedSize', 'uncompressedSize', 'url'],
    additionalProperties: false,
    properties: {
      selector: { type: 'string', description: 'The shortest selector that picks exactly this partition.' },
      number: { type: 'integer', minimum: 1, description: 'GPT entry number.' },
      path: { type: 'string', description: 'Path of the image inside the archive.' },
      role: { enum: ['filesystem', 'verity-hash', 'partition'] },
      mountPoint: { type: 'string' },
      fsType: { type: 'string' },
      fsUuid: { type: 'string' },
      partType: { type: 'string' },
      dpsName: { type: 'string', description: 'Discoverable Partitions Specification name of partType.' },
      compressedSize: count,
      uncompressedSize: count,
      sha384: { type: 'string', description: 'SHA-384 of the compressed image (lowercase hex).' },
      shrunk: { type: 'boolean' },
      partitionSize: count,
      headerOffset: count,
      dataOffset: count,
      storedSize: count,
      verified: { type: 'string', description: "--verify result: 'ok' or why the stored bytes do not match." },
      frames: { ...count, description: 'zstd frames of a framed image (one ending with a seek table); ?decompress=1 honours Range on these. Absent for one-frame images.' },
      url: { type: 'string', format: 'uri-reference' },
      blobUrl: { type: 'string', format: 'uri-reference' },
    },
  },
  Entry: {
    type: 'object',
    required: ['name', 'type', 'headerOffset', 'dataOffset', 'size'],
    additionalProperties: false,
    properties: { name: { type: 'string' }, type: { type: 'string' }, headerOffset: count, dataOffset: count, size: count },
  },
  Image: {
    type: 'object',
    required: ['id', 'url', 'rawUrl', 'metadataUrl', 'size', 'mtime', 'etag', 'valid', 'errors', 'warnings', 'indexedAt', 'partitions'],
    additionalProperties: false,
    properties: {
      id: { type: 'string', description: "Relative path without .cosi ('/'-separated), or a remote's name." },
      url: { type: 'string', format: 'uri-reference' },
      rawUrl: { type: 'string', format: 'uri-reference' },
      metadataUrl: { type: 'string', format: 'uri-reference' },
      size: count,
      mtime: { type: 'string', format: 'date-time' },
      etag: { type: 'string', pattern: '^"[^"]+"$' },
      valid: { type: 'boolean' },
      reason: { type: 'string', description: 'The first problem, when invalid.' },
      errors: { type: 'array', items: ref('schemas', 'Issue') },
      warnings: { type: 'array', items: ref('schemas', 'Issue') },
      indexedAt: { type: 'string', format: 'date-time' },
      metadataSha384: sha384Hex,
      version: { type: 'string' },
      cosiId: { type: 'string' },
      osArch: { type: 'string' },
      prettyName: { type: 'string' },
      osId: { type: 'string' },
      versionId: { type: 'string' },
      bootloader: { type: 'string' },
      packages: count,
      disk: { type: 'object', required: ['size', 'lbaSize'], additionalProperties: false, properties: { size: count, lbaSize: { enum: [512, 4096] } } },
      compressedTotal: count,
      uncompressedTotal: count,
      primaryGpt: {
        type: 'object',
        required: ['path', 'url'],
        additionalProperties: false,
        properties: { path: { type: 'string' }, url: { type: 'string', format: 'uri-reference' }, dataOffset: count, storedSize: count },
      },
      partitions: { type: 'array', items: ref('schemas', 'Partition') },
      entries: { type: 'array', items: ref('schemas', 'Entry'), description: 'Only in GET /v1/images/{id}.' },
      corrupt: { type: 'integer', minimum: 1, description: 'Partitions --verify found corrupt.' },
      remote: { const: true, description: 'Listed from --remote / --remote-list: the bytes live on another server.' },
      aliasOf: { type: 'string', description: 'This id names the same file as that image (a symlink or hard link inside the root): same bytes, same index record.' },
    },
  },
  ImageDetail: { type: 'object', allOf: [ref('schemas', 'Image')], required: ['entries'], properties: { entries: { type: 'array' } } },
  ImageList: {
    type: 'object',
    required: ['count', 'images'],
    additionalProperties: false,
    properties: { count, scannedAt: { type: 'string', format: 'date-time' }, images: { type: 'array', items: ref('schemas', 'Image') } },
  },
  Health: {
    type: 'object',
    required: ['status', 'images'],
    additionalProperties: false,
    properties: { status: { enum: ['ok', 'draining'] }, images: count, scannedAt: { type: 'string', format: 'date-time' } },
  },
};

const hdr = (description: string, schema: Json = { type: 'string' }): Json => ({ description, schema });
const headers: Record<string, Json> = {
  ETag: hdr('Strong entity tag (never weak, so it works in If-Range).'),
  LastModified: hdr('HTTP date of the archive file.'),
  AcceptRanges: hdr("'bytes' on byte endpoints ('none' with ?decompress=1).", { enum: ['bytes', 'none'] }),
  ContentLength: hdr('Always sent on byte endpoints: they are never chunked.', count),
  ContentRange: hdr('bytes START-END/SIZE on 206; bytes */SIZE on 416.'),
  CacheControl: hdr("Blobs: 'public, max-age=31536000, immutable'; generated text and redirects: 'no-cache'."),
  Sha384: hdr('SHA-384 (hex) of the compressed image, or of metadata.json on the metadata endpoint.', sha384Hex),
  MetadataSha384: hdr('SHA-384 (hex) of the archive\'s metadata.json.', sha384Hex),
  CompressedSize: hdr('Bytes of the compressed image as stored.', count),
  UncompressedSize: hdr('Bytes of the image once decompressed.', count),
  Path: hdr('Path of the image inside the archive.'),
  Verify: hdr('Set when --verify found the stored bytes corrupt: why.'),
  Origin: hdr('With --redirect, for a remote image: the origin URL of the archive holding these bytes.', { type: 'string', format: 'uri' }),
  OriginRange: hdr('With --redirect, for a remote image: where these bytes sit in the origin file (a Range header value).'),
  Location: hdr('The origin URL of a remote archive (--redirect).', { type: 'string', format: 'uri' }),
  RetryAfter: hdr('Seconds to wait before retrying.', count),
  WWWAuthenticate: hdr('Bearer realm="cosi"'),
  Allow: hdr('GET, HEAD', { const: 'GET, HEAD' }),
  Vary: hdr('Host: generated text holds absolute URLs built from it.'),
};

const parameters: Record<string, Json> = {
  id: {
    name: 'id',
    in: 'path',
    required: true,
    description: "Image id: the archive's path under the catalog root without .cosi, or a remote's name. May contain '/' (subdirectories); segments are percent-encoded, the slashes are not.",
    schema: { type: 'string' },
    example: 'lab/small4k',
  },
  selector: {
    name: 'selector',
    in: 'path',
    required: true,
    description: "Which image entry: a DPS type name (root, esp, home...), a mount point (/var, percent-encoded), a GPT number, the image's path in the archive, or 'primary-gpt'.",
    schema: { type: 'string' },
    example: 'root',
  },
  name: { name: 'name', in: 'path', required: true, description: 'A file name in --netboot-dir (no slashes, not starting with a dot).', schema: { type: 'string', pattern: '^[A-Za-z0-9_][A-Za-z0-9._-]*$' }, example: 'vmlinuz' },
  hex: { name: 'hex', in: 'path', required: true, description: 'SHA-384 of the compressed image, 96 hex digits.', schema: { type: 'string', pattern: '^[0-9a-fA-F]{96}$' } },
  path: {
    name: 'path',
    in: 'path',
    required: true,
    description: "Relative path of the archive, ending in .cosi; may contain '/'.",
    schema: { type: 'string', pattern: '\\.cosi$' },
    example: 'lab/small4k.cosi',
  },
  decompress: {
    name: 'decompress',
    in: 'query',
    required: false,
    description: "1: stream the decompressed image (no Range; the last chunk is held until the SHA-384 matched, and on a mismatch the connection is cut short of Content-Length). Concurrency is capped (503 + Retry-After beyond it).",
    schema: { enum: ['1'] },
  },
  q: { name: 'q', in: 'query', required: false, description: "Filter words, each matched (case-insensitive) against an image's id, name, version, architecture, bootloader, validity and partition types, mount points and filesystems.", schema: { type: 'string' } },
  page: { name: 'page', in: 'query', required: false, description: 'Page of the filtered list, from 1 (50 images a page); past the last means the last.', schema: { type: 'integer', minimum: 1 } },
  pkg: { name: 'pkg', in: 'query', required: false, description: 'Show only the packages whose name, version, release or arch hold each of these words.', schema: { type: 'string' } },
  Range: { name: 'Range', in: 'header', required: false, description: 'bytes=A-B, bytes=A-, bytes=-N, or several comma-separated (multipart/byteranges up to the server cap, a plain 200 beyond it).', schema: { type: 'string' } },
  IfRange: { name: 'If-Range', in: 'header', required: false, description: 'ETag or HTTP date: the Range applies only while the representation is unchanged.', schema: { type: 'string' } },
  IfNoneMatch: { name: 'If-None-Match', in: 'header', required: false, description: '304 when it matches the ETag.', schema: { type: 'string' } },
  IfModifiedSince: { name: 'If-Modified-Since', in: 'header', required: false, description: '304 when unchanged since (ignored with If-None-Match).', schema: { type: 'string' } },
  IfMatch: { name: 'If-Match', in: 'header', required: false, description: '412 when it does not match the ETag (strong comparison; * matches).', schema: { type: 'string' } },
  IfUnmodifiedSince: {
    name: 'If-Unmodified-Since',
    in: 'header',
    required: false,
    description: '412 when modified since (ignored with If-Match, and when not an HTTP date).',
    schema: { type: 'string' },
  },
};

const errorContent = { 'application/json': { schema: ref('schemas', 'Error') } };
const responses: Record<string, Json> = {
  Unauthorized: { description: 'A bearer token is required (--token-file).', headers: { 'WWW-Authenticate': ref('headers', 'WWWAuthenticate') }, content: errorContent },
  NotFound: { description: 'No such image, partition, blob or resource.', content: errorContent },
  MethodNotAllowed: { description: 'The server is read-only: every method other than GET and HEAD.', headers: { Allow: ref('headers', 'Allow') }, content: errorContent },
  Unprocessable: { description: 'The archive is not a readable or valid COSI file, or lacks what was asked.', content: errorContent },
  Busy: { description: 'Too many open files, decompressions or connections; retry.', headers: { 'Retry-After': ref('headers', 'RetryAfter') }, content: errorContent },
  BadRequest: { description: 'A Host header absolute URLs cannot be built from (use --public-url).', content: errorContent },
};

/** The responses every byte endpoint shares: ranges, validators, preconditions. */
function byteResponses(contentType: string, extra: Record<string, Json>, what: string): Record<string, Json> {
  const common = {
    ETag: ref('headers', 'ETag'),
    'Last-Modified': ref('headers', 'LastModified'),
    'Accept-Ranges': ref('headers', 'AcceptRanges'),
    ...extra,
  };
  const binary = { schema: { type: 'string', contentMediaType: contentType } };
  return {
    '200': { description: `${what}, whole.`, headers: { ...common, 'Content-Length': ref('headers', 'ContentLength') }, content: { [contentType]: binary } },
    '206': {
      description: 'One range (Content-Range), or several as multipart/byteranges.',
      headers: { ...common, 'Content-Length': ref('headers', 'ContentLength'), 'Content-Range': ref('headers', 'ContentRange') },
      content: { [contentType]: binary, 'multipart/byteranges': { schema: { type: 'string' } } },
    },
    '304': { description: 'Not modified (If-None-Match / If-Modified-Since).', headers: common },
    '401': ref('responses', 'Unauthorized'),
    '404': ref('responses', 'NotFound'),
    '412': { description: 'If-Match did not match, or modified since If-Unmodified-Since.', headers: common, content: errorContent },
    '416': { description: 'No requested range starts before the end.', headers: { ...common, 'Content-Range': ref('headers', 'ContentRange') }, content: errorContent },
    '503': ref('responses', 'Busy'),
  };
}

const conditional = ['Range', 'IfRange', 'IfNoneMatch', 'IfModifiedSince', 'IfMatch', 'IfUnmodifiedSince'].map((p) => ref('parameters', p));
const partitionHeaders = {
  'X-Cosi-Sha384': ref('headers', 'Sha384'),
  'X-Cosi-Compressed-Size': ref('headers', 'CompressedSize'),
  'X-Cosi-Uncompressed-Size': ref('headers', 'UncompressedSize'),
  'X-Cosi-Origin': ref('headers', 'Origin'),
  'X-Cosi-Origin-Range': ref('headers', 'OriginRange'),
};

interface Op {
  id: string;
  summary: string;
  description?: string;
  parameters?: Json[];
  responses: Record<string, Json>;
  tags: string[];
}

const PATH_PARAMS = new Set(['id', 'selector', 'hex', 'path', 'name']);

/** GET as described, HEAD the same without bodies, OPTIONS (like every other method) 405. */
function pathItem(op: Op): Json {
  const get = { operationId: op.id, summary: op.summary, description: op.description, tags: op.tags, parameters: op.parameters, responses: op.responses };
  const headResponses = Object.fromEntries(
    Object.entries(op.responses).map(([code, r]) => {
      if ('$ref' in r) return [code, r];
      const { content: _content, ...rest } = r as Json & { content?: unknown };
      return [code, { ...rest, description: `${String(rest['description'])} (headers only)` }];
    }),
  );
  // A path template's parameters must be declared by every operation under it.
  const params = (op.parameters ?? []).filter((p) => PATH_PARAMS.has(String(p['$ref']).split('/').pop()!));
  return {
    get,
    head: { operationId: `${op.id}Head`, summary: `${op.summary} (headers only)`, tags: op.tags, parameters: op.parameters, responses: headResponses },
    options: {
      operationId: `${op.id}Options`,
      summary: 'Not allowed: the server is read-only (the same for POST, PUT, DELETE and every method but GET and HEAD).',
      tags: op.tags,
      parameters: params.length > 0 ? params : undefined,
      responses: { '405': ref('responses', 'MethodNotAllowed') },
    },
  };
}

const P = (name: string) => ref('parameters', name);

const paths: Record<string, Json> = {
  '/': pathItem({
    id: 'catalogPage',
    tags: ['catalog'],
    summary: 'The catalog as an HTML page: a filter, 50 images a page, copyable cosi-fetch commands (disk, inspect, each partition).',
    parameters: [P('q'), P('page')],
    responses: { '200': { description: 'HTML.', content: { 'text/html': { schema: { type: 'string' } } } }, '401': ref('responses', 'Unauthorized') },
  }),
  '/images/{id}': pathItem({
    id: 'imagePage',
    tags: ['catalog'],
    summary: 'One image as an HTML page: partitions with their full SHA-384s, osRelease, bootloader, packages (searchable), commands.',
    parameters: [P('id'), P('pkg')],
    responses: {
      '200': { description: 'HTML.', content: { 'text/html': { schema: { type: 'string' } } } },
      '401': ref('responses', 'Unauthorized'),
      '404': ref('responses', 'NotFound'),
    },
  }),
  '/healthz': pathItem({
    id: 'health',
    tags: ['operations'],
    summary: 'Liveness for load balancers (no token needed).',
    responses: {
      '200': { description: 'Serving.', content: { 'application/json': { schema: ref('schemas', 'Health') } } },
      '503': { description: 'Draining for shutdown.', content: { 'application/json': { schema: ref('schemas', 'Health') } } },
    },
  }),
  '/metrics': pathItem({
    id: 'metrics',
    tags: ['operations'],
    summary: 'Prometheus text format: requests by route and status, bytes served, range requests, index errors, catalog size.',
    responses: { '200': { description: 'Metrics.', content: { 'text/plain': { schema: { type: 'string' } } } }, '401': ref('responses', 'Unauthorized') },
  }),
  '/openapi.json': pathItem({
    id: 'openapi',
    tags: ['operations'],
    summary: 'This document.',
    responses: { '200': { description: 'OpenAPI 3.1.', content: { 'application/json': { schema: { type: 'object' } } } }, '401': ref('responses', 'Unauthorized') },
  }),
  '/v1/images': pathItem({
    id: 'listImages',
    tags: ['catalog'],
    summary: 'Every archive in the catalog (local and remote), invalid ones with their reason.',
    responses: { '200': { description: 'The catalog.', content: { 'application/json': { schema: ref('schemas', 'ImageList') } } }, '401': ref('responses', 'Unauthorized') },
  }),
  '/v1/images/{id}': pathItem({
    id: 'getImage',
    tags: ['catalog'],
    summary: 'One image: metadata summary, partitions, tar entry offsets, validity.',
    parameters: [P('id')],
    responses: {
      '200': { description: 'The image.', headers: { ETag: ref('headers', 'ETag') }, content: { 'application/json': { schema: ref('schemas', 'ImageDetail') } } },
      '401': ref('responses', 'Unauthorized'),
      '404': ref('responses', 'NotFound'),
      '503': ref('responses', 'Busy'),
    },
  }),
  '/v1/images/{id}/metadata.json': pathItem({
    id: 'getMetadata',
    tags: ['images'],
    summary: "The exact metadata.json bytes from the archive; the ETag is their SHA-384.",
    parameters: [P('id'), ...conditional],
    responses: { ...byteResponses('application/json', { 'X-Cosi-Sha384': ref('headers', 'Sha384') }, 'metadata.json'), '422': ref('responses', 'Unprocessable') },
  }),
  '/v1/images/{id}/partitions/{selector}': pathItem({
    id: 'getPartition',
    tags: ['images'],
    summary: 'The compressed (zstd) bytes of one image entry, with Range; or decompressed with ?decompress=1.',
    description: 'With ?decompress=1 the body is application/octet-stream, Accept-Ranges: none, ETag "raw-<sha384>", and Range is ignored.',
    parameters: [P('id'), P('selector'), P('decompress'), ...conditional],
    responses: {
      ...byteResponses('application/zstd', { ...partitionHeaders, 'X-Cosi-Path': ref('headers', 'Path'), 'X-Cosi-Verify': ref('headers', 'Verify') }, 'The image entry'),
      '422': ref('responses', 'Unprocessable'),
    },
  }),
  '/v1/images/{id}/plan.txt': pathItem({
    id: 'getInstallPlan',
    tags: ['netboot'],
    summary: "The install plan for deploy/netboot/install.sh's curl + dd fallback (format cosi-plan 1).",
    description:
      'Lines: `cosi-plan 1`; `metadata <sha384> <url>`; `disk <size> <lbaSize>`; `region primary-gpt 0 <bytes> <sha384> <url>`; `region <N> <offset> <bytes> <sha384> <url>`. URLs are absolute (from --public-url or the Host header) and point at ?decompress=1 endpoints.',
    parameters: [P('id')],
    responses: {
      '200': { description: 'The plan.', headers: { 'Cache-Control': ref('headers', 'CacheControl'), Vary: ref('headers', 'Vary') }, content: { 'text/plain': { schema: { type: 'string' } } } },
      '400': ref('responses', 'BadRequest'),
      '401': ref('responses', 'Unauthorized'),
      '404': ref('responses', 'NotFound'),
      '422': ref('responses', 'Unprocessable'),
    },
  }),
  '/v1/images/{id}/boot.ipxe': pathItem({
    id: 'getBootScript',
    tags: ['netboot'],
    summary: 'An iPXE script booting the configured installer kernel and initramfs with cosi.url, cosi.sha384 and cosi.disk for this image.',
    parameters: [P('id')],
    responses: {
      '200': { description: 'The script.', headers: { 'Cache-Control': ref('headers', 'CacheControl'), Vary: ref('headers', 'Vary') }, content: { 'text/plain': { schema: { type: 'string' } } } },
      '400': ref('responses', 'BadRequest'),
      '401': ref('responses', 'Unauthorized'),
      '404': { description: 'No such image, or netboot is not configured (error code NOT_CONFIGURED: start with --ipxe-kernel and --ipxe-initrd).', content: errorContent },
      '422': ref('responses', 'Unprocessable'),
    },
  }),
  '/v1/blobs/sha384/{hex}': pathItem({
    id: 'getBlob',
    tags: ['images'],
    summary: 'A compressed image addressed by its SHA-384: immutable, cacheable for a year, shared by every image holding it.',
    parameters: [P('hex'), ...conditional],
    responses: byteResponses('application/zstd', { ...partitionHeaders, 'Cache-Control': ref('headers', 'CacheControl') }, 'The blob'),
  }),
  '/netboot/{name}': pathItem({
    id: 'getNetbootFile',
    tags: ['netboot'],
    summary: "A file of --netboot-dir: the installer's kernel and initramfs that boot.ipxe names (--ipxe-kernel /netboot/vmlinuz).",
    description: 'Read at request time, so a rebuilt initramfs is served without a restart.',
    parameters: [P('name'), ...conditional],
    responses: {
      ...byteResponses('application/octet-stream', { 'Cache-Control': ref('headers', 'CacheControl') }, 'The file'),
      '404': { description: 'No such file, or no --netboot-dir (error code NOT_CONFIGURED).', content: errorContent },
    },
  }),
  '/cosi/{path}': pathItem({
    id: 'getArchive',
    tags: ['images'],
    summary: 'The raw .cosi archive, with full range support (for installers that read COSI by range, and plain tools).',
    description: 'With --redirect, a remote archive is answered with 307 to its origin URL (the same bytes, so any range the client then asks of the origin is right).',
    parameters: [P('path'), ...conditional],
    responses: {
      ...byteResponses('application/x-tar', { 'X-Cosi-Metadata-Sha384': ref('headers', 'MetadataSha384') }, 'The archive'),
      '307': {
        description: '--redirect and a remote archive: fetch it from its origin.',
        headers: { Location: ref('headers', 'Location'), 'Cache-Control': ref('headers', 'CacheControl'), 'X-Cosi-Metadata-Sha384': ref('headers', 'MetadataSha384') },
      },
    },
  }),
};

export function openApiDocument(version = '0.1.0'): Json {
  return {
    openapi: '3.1.0',
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    info: {
      title: 'cosi-server',
      version,
      description:
        'Serves COSI (Composable OS Image) archives with full HTTP range semantics (RFC 9110). Read-only: GET and HEAD only, every other method is 405. Errors are JSON `{ "error": { "code", "message" } }`. With --token-file every endpoint but /healthz needs `Authorization: Bearer TOKEN`. Every endpoint answers 400 to a request with two Host headers, an invalid Host or two Authorization headers, and 503 with Retry-After and Connection: close to a connection past --max-connections. HEAD sends the headers GET would, Content-Length included.',
      license: { name: 'MIT', identifier: 'MIT' },
    },
    tags: [
      { name: 'catalog', description: 'What the server holds.' },
      { name: 'images', description: 'Bytes: metadata, partitions, blobs, raw archives.' },
      { name: 'netboot', description: 'Network installs.' },
      { name: 'operations', description: 'Health, metrics, this document.' },
    ],
    paths,
    components: {
      schemas,
      parameters,
      headers,
      responses,
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'Only when the server runs with --token-file.' } },
    },
  };
}
