/**
 * Process-level wiring: the catalog, the app, the HTTP(S) server with its
 * timeouts, and graceful shutdown. `startServer` is what the CLI runs and
 * what tests start in-process.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { getRequestListener, type Http2Bindings, type HttpBindings } from '@hono/node-server';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import { CosiError } from '../shared/errors.js';
import { createApp } from './app.js';
import { bearerAuthorizer, loadTokens } from './auth.js';
import { Catalog } from './catalog/catalog.js';
import { defaultConfig, type ServerConfig } from './config.js';
import type { AppDeps } from './http/env.js';
import { errorBody } from './http/errors.js';
import { rawFastPath } from './routes/raw-fast.js';
import { capConnections, defaultMaxConnections, malformedHeaders, refuseBusy, refuseMalformed } from './http/admission.js';
import { trackRequest } from './http/track.js';
import { transferBufferBytes } from './http/fd-body.js';
import { Gate } from './http/gate.js';
import { Metrics } from './metrics.js';
import { checkNetbootDir } from './netboot.js';
import { RemoteCatalog } from './catalog/remote.js';
import { ensureSampleCatalog } from './catalog/sample.js';
import { listenError } from './listen-error.js';
import { loadTlsFiles } from './tls-files.js';

export type LogSink = (line: Record<string, unknown>) => void;

export interface StartOptions extends Partial<ServerConfig> {
  /** Where request and event lines go; default stderr, `false` for none. */
  log?: LogSink | false;
  /** The /metrics text when this process is one of several workers (the totals of all). */
  metricsText?: () => Promise<string>;
}

export interface RunningServer {
  url: string;
  port: number;
  /** The local catalog directory; empty when the catalog is remote only. */
  root: string;
  catalog: Catalog;
  metrics: Metrics;
  server: Server;
  /** Stop accepting, let running transfers finish within the grace period, then cut the rest. */
  close(graceMs?: number): Promise<void>;
}

function formatHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

export async function startServer(opts: StartOptions = {}): Promise<RunningServer> {
  const config: ServerConfig = { ...defaultConfig(), ...Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)) };
  const stderrLog: LogSink = (line) => void process.stderr.write(JSON.stringify(line) + '\n');
  const log: LogSink | undefined = opts.log === false || config.quiet ? undefined : (opts.log ?? stderrLog);

  const hasRemotes = config.remotes.length > 0 || config.remoteList !== undefined;
  // The sample catalog is for a bare first start; a server given remotes serves just those.
  const root = config.root ?? (hasRemotes ? '' : await ensureSampleCatalog(config.cacheDir, log));
  const metrics = new Metrics();
  const eventLog = log && ((e: Record<string, unknown>) => log({ time: new Date().toISOString(), ...e }));
  const remote = hasRemotes ? new RemoteCatalog({ specs: config.remotes, listFile: config.remoteList, maxMetadataBytes: config.maxMetadataBytes, metrics, log: eventLog }) : undefined;
  const catalog = new Catalog({
    root,
    remote,
    rescanSeconds: config.rescanSeconds,
    watch: config.watch,
    verify: config.verify,
    maxOpenFiles: config.maxOpenFiles,
    indexCacheEntries: config.indexCacheEntries,
    maxMetadataBytes: config.maxMetadataBytes,
    metrics,
    log: eventLog,
  });
  try {
    await catalog.start();
  } catch (err) {
    void catalog.close();
    throw err instanceof CosiError ? err : new CosiError('COSI_ERR_IO', (err as Error).message, { cause: err });
  }
  metrics.gauge('cosi_catalog_images', 'Archives in the catalog, by validity.', () => {
    return [
      { labels: { valid: 'true' }, value: countValid(catalog, true) },
      { labels: { valid: 'false' }, value: countValid(catalog, false) },
    ];
  }, 'max');
  metrics.gauge('cosi_open_files', 'Archive descriptors open (busy, or cached for the next request).', () => catalog.openDescriptors);
  metrics.gauge('cosi_transfers_open', 'Archives handed out to requests and not yet released.', () => catalog.openHandles);
  const decompressGate = new Gate(config.maxDecompressions);
  metrics.gauge('cosi_decompressions_active', 'Running ?decompress=1 streams.', () => decompressGate.inUse);
  metrics.gauge('cosi_transfer_buffer_bytes', 'Read buffers held by byte transfers from local files (two per transfer, 64 KiB to 1 MiB each).', () => transferBufferBytes());

  const authorize = config.tokenFile ? bearerAuthorizer(await loadTokens(config.tokenFile)) : undefined;
  let draining = false;
  if (config.netbootDir) await checkNetbootDir(config.netbootDir);
  const netboot =
    config.ipxeKernel && config.ipxeInitrd
      ? { kernel: config.ipxeKernel, initrd: config.ipxeInitrd, cmdline: config.ipxeCmdline, disk: config.ipxeDisk }
      : undefined;
  const deps: AppDeps = {
    catalog,
    metrics,
    maxRanges: config.maxRanges,
    decompressGate,
    authorize,
    log,
    draining: () => draining,
    redirect: config.redirect,
    publicUrl: config.publicUrl,
    scheme: config.tlsCert ? 'https' : 'http',
    netboot,
    netbootDir: config.netbootDir,
    metricsText: opts.metricsText,
  };
  const app = createApp(deps);
  const fastRaw = rawFastPath(deps);

  // Byte endpoints write to the socket themselves. Hono rewraps HEAD answers in a fresh Response,
  // which would make node-server write headers a second time: hand it the "already sent" marker instead.
  const fetch = async (req: Request, env: HttpBindings | Http2Bindings): Promise<Response> => {
    const res = await app.fetch(req, env as HttpBindings);
    return env.outgoing.headersSent ? RESPONSE_ALREADY_SENT : res;
  };
  const listener = getRequestListener(fetch, {
    // Requests node-server cannot even turn into a Request (bad Host, backslashes): still our JSON shape.
    errorHandler: () =>
      new Response(JSON.stringify(errorBody('BAD_REQUEST', 'malformed request')), { status: 400, headers: { 'Content-Type': 'application/json' } }),
  });
  let inflight = 0;
  let drained: (() => void) | undefined;
  const maxConnections = config.maxConnections ?? defaultMaxConnections(config.maxOpenFiles);
  let admission: ReturnType<typeof capConnections> | undefined;
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    inflight++;
    res.once('close', () => {
      inflight--;
      if (inflight === 0) drained?.();
    });
    if (admission?.refused(req.socket)) {
      trackRequest(deps, req, res).route = 'refused';
      return refuseBusy(res, maxConnections);
    }
    const bad = malformedHeaders(req);
    if (bad !== undefined) {
      trackRequest(deps, req, res).route = 'bad-request';
      return refuseMalformed(res, bad);
    }
    if (!fastRaw(req, res)) void listener(req, res);
  };
  // Node requires headersTimeout <= requestTimeout.
  const timeouts = { headersTimeout: Math.min(config.headersTimeoutMs, config.requestTimeoutMs), requestTimeout: config.requestTimeoutMs, keepAliveTimeout: 5000 };
  let server: Server;
  if (config.tlsCert && config.tlsKey) {
    const { cert, key } = await loadTlsFiles(config.tlsCert, config.tlsKey).catch((err: unknown) => {
      void catalog.close();
      throw err;
    });
    server = createHttpsServer({ cert, key, ...timeouts }, onRequest) as unknown as Server;
  } else {
    server = createHttpServer(timeouts, onRequest);
  }
  server.setTimeout(config.idleTimeoutMs, (socket) => socket.destroy());
  admission = capConnections(server, maxConnections, config.tlsCert !== undefined);
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    if (!socket.writable) return socket.destroy();
    const body = JSON.stringify(errorBody('BAD_REQUEST', 'malformed request'));
    const status = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : '400 Bad Request';
    socket.end(`HTTP/1.1 ${status}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      void catalog.close();
      reject(listenError(config.host, config.port, err));
    });
    server.listen(config.port, config.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const url = `${config.tlsCert ? 'https' : 'http'}://${formatHost(config.host)}:${port}`;

  let closing: Promise<void> | undefined;
  let cutNow: (() => void) | undefined;
  const close = (graceMs = config.shutdownGraceMs): Promise<void> => {
    // Already draining: close(0) (a second signal) stops waiting for the transfers.
    if (closing && graceMs === 0) cutNow?.();
    closing ??= (async () => {
      draining = true;
      const handlesClosed = catalog.close();
      const stopped = new Promise<void>((r) => server.close(() => r()));
      server.closeIdleConnections();
      if (inflight > 0) {
        await Promise.race([
          new Promise<void>((r) => (drained = r)),
          new Promise<void>((r) => (cutNow = r)),
          new Promise<void>((r) => setTimeout(r, graceMs).unref()),
        ]);
      }
      // Past the deadline (or done): whatever is left is cut.
      for (const s of sockets) s.destroy();
      await stopped;
      await handlesClosed;
    })();
    return closing;
  };

  return { url, port, root, catalog, metrics, server, close };
}

function countValid(catalog: Catalog, valid: boolean): number {
  return catalog.validity().filter((v) => v === valid).length;
}
