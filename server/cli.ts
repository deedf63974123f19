#!/usr/bin/env node
/**
 * cosi-server: serve a directory of COSI files over HTTP with full range
 * support. Prints one JSON line to stdout once listening (scripts and tests
 * read the URL from it, which matters with --port 0); logs go to stderr.
 * With --workers N > 1 this process is the cluster's primary and the workers
 * run this file again (server/cluster/).
 */
import cluster from 'node:cluster';
import { runMain } from '../shared/cli/run.js';
import { runPrimary } from './cluster/primary.js';
import { runWorker } from './cluster/worker.js';
import { parseConfig, USAGE } from './config.js';
import { startServer } from './server.js';

await runMain('cosi-server', async () => {
  if (cluster.isWorker) return runWorker();
  const parsed = parseConfig(process.argv.slice(2));
  if (parsed.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const config = parsed.config;
  const listening = (info: { url: string; port: number; root: string; images: number }, workers?: number) =>
    process.stdout.write(
      JSON.stringify({ event: 'listening', url: info.url, port: info.port, root: info.root, images: info.images, sample: config.root === undefined, ...(workers ? { workers } : {}) }) + '\n',
    );
  if (config.workers > 1) return runPrimary(config, (info) => listening(info, config.workers));
  const running = await startServer(config);
  listening({ url: running.url, port: running.port, root: running.root, images: running.catalog.size });
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) {
        // A second signal: stop waiting for transfers.
        void running.close(0).then(resolve);
        return;
      }
      stopping = true;
      if (!config.quiet) process.stderr.write(JSON.stringify({ time: new Date().toISOString(), event: 'shutdown', signal, graceMs: config.shutdownGraceMs }) + '\n');
      void running.close().then(resolve);
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
  return 0;
});
