/** /healthz for load balancers, /metrics for Prometheus, /openapi.json for tooling. */
import { Hono } from 'hono';
import { getCounted, type AppDeps, type AppEnv } from '../http/env.js';
import { openApiDocument } from '../openapi.js';

export function opsRoutes(deps: AppDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  getCounted(app, '/healthz', 'healthz', (c) => {
    c.header('Cache-Control', 'no-store');
    const draining = deps.draining?.() ?? false;
    return c.json(
      { status: draining ? 'draining' : 'ok', images: deps.catalog.size, scannedAt: deps.catalog.lastScan?.toISOString() },
      draining ? 503 : 200,
    );
  });
  getCounted(app, '/metrics', 'metrics', async (c) => {
    c.header('Cache-Control', 'no-store');
    const text = deps.metricsText ? await deps.metricsText() : deps.metrics.render();
    return c.text(text, 200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8' });
  });
  // Built once: it describes the code, not the catalog.
  const openapi = JSON.stringify(openApiDocument());
  getCounted(app, '/openapi.json', 'openapi', (c) => {
    c.header('Cache-Control', 'no-cache');
    return c.body(openapi, 200, { 'Content-Type': 'application/json; charset=utf-8' });
  });
  return app;
}
