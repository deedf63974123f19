/**
 * /openapi.json against the code: every route the app registers is
 * described, every described path answers on a real server with a fixture
 * catalog, every $ref resolves, the JSON Schemas compile in strict Ajv
 * (draft 2020-12, OpenAPI 3.1's dialect), and real responses validate.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { createApp } from '../server/app.js';
import { Gate } from '../server/http/gate.js';
import { Metrics } from '../server/metrics.js';
import { openApiDocument } from '../server/openapi.js';
import { startServer, type RunningServer } from '../server/server.js';
import { packedDisk, SMALL, SMALL_4K } from './fixtures.js';
import { http, json, tempCatalog } from './server-helpers.js';

let srv: RunningServer;
let cleanup: () => Promise<void>;
let doc: any;

before(async () => {
  const a = await packedDisk(SMALL);
  const b = await packedDisk(SMALL_4K);
  const cat = await tempCatalog({ 'small.cosi': a.cosi, 'lab/small4k.cosi': b.cosi, 'broken/truncated.cosi': a.cosi });
  cleanup = cat.cleanup;
  await truncate(join(cat.dir, 'broken/truncated.cosi'), 3000);
  await writeFile(join(cat.dir, 'broken/notes.cosi'), 'not an archive\n');
  await mkdir(join(cat.dir, 'nb'));
  await writeFile(join(cat.dir, 'nb/vmlinuz'), 'a kernel\n');
  srv = await startServer({ root: cat.dir, port: 0, log: false, rescanSeconds: 0, watch: false, ipxeKernel: '/k', ipxeInitrd: '/i', netbootDir: join(cat.dir, 'nb') });
  const r = await http(srv.url, '/openapi.json');
  assert.equal(r.status, 200);
  assert.match(String(r.headers['content-type']), /^application\/json/);
  doc = json(r);
});

after(async () => {
  await srv?.close(500);
  await cleanup?.();
});

/** A Hono route pattern as a regular expression over concrete paths. */
function honoRegex(path: string): RegExp {
  const body = path
    .split('/')
    .map((seg) => (seg === '*' ? '.+' : seg.startsWith(':') ? '[^/]+' : seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
    .join('/');
  return new RegExp(`^${body}$`);
}

/** A documented path with sample values for its parameters. */
function concrete(path: string, values: Record<string, string>): string {
  return path.replace(/\{(\w+)\}/g, (_, name: string) => values[name] ?? assert.fail(`no sample value for {${name}}`));
}

function resolveRef(ref: string): unknown {
  assert.match(ref, /^#\//);
  return ref
    .slice(2)
    .split('/')
    .reduce<any>((node, key) => (node === undefined ? undefined : node[key.replace(/~1/g, '/').replace(/~0/g, '~')]), doc);
}

describe('the document against the routes', () => {
  test('every GET route the app registers is described, and every described path is routed', async () => {
    const app = createApp({ catalog: srv.catalog, metrics: new Metrics(), maxRanges: 4, decompressGate: new Gate(1) });
    const routes = [...new Set(app.routes.filter((r) => r.method === 'GET').map((r) => r.path))];
    assert.ok(routes.length >= 8, routes.join(' '));
    const documented = Object.keys(doc.paths);
    const samples = documented.map((p) => concrete(p, { id: 'lab/small4k', selector: 'root', hex: 'a'.repeat(96), path: 'lab/small4k.cosi', name: 'vmlinuz' }));
    for (const route of routes) {
      const re = honoRegex(route);
      assert.ok(samples.some((s) => re.test(s)), `route ${route} is not in /openapi.json`);
    }
    for (const s of samples) {
      assert.ok(routes.some((r) => honoRegex(r).test(s)), `documented ${s} has no route`);
    }
    // Other methods are only ever 405 (the middleware answers before any route).
    assert.deepEqual([...new Set(app.routes.map((r) => r.method))].filter((m) => m !== 'GET' && m !== 'ALL'), []);
  });

  test('every documented path answers (not 404) with real ids, selectors and hashes', async () => {
    const img = json(await http(srv.url, '/v1/images/lab/small4k'));
    const values = { id: 'lab/small4k', selector: 'root', hex: img.partitions[0].sha384, path: 'lab/small4k.cosi', name: 'vmlinuz' };
    for (const [path, item] of Object.entries<any>(doc.paths)) {
      const url = concrete(path, values);
      const get = await http(srv.url, url);
      assert.notEqual(get.status, 404, `GET ${url}: ${get.body.toString().slice(0, 200)}`);
      assert.ok(item.get.responses[String(get.status)], `GET ${url} answered ${get.status}, which is not documented`);
      const head = await http(srv.url, url, { method: 'HEAD' });
      assert.equal(head.status, get.status, `HEAD ${url}`);
      const opt = await http(srv.url, url, { method: 'OPTIONS' });
      assert.equal(opt.status, 405, `OPTIONS ${url}`);
      assert.ok(item.options.responses['405']);
      assert.equal(opt.headers.allow, 'GET, HEAD');
    }
  });

  test('byte endpoints document 200/206/304/401/404/416/503, ranges and the X-Cosi headers', () => {
    for (const path of ['/v1/images/{id}/metadata.json', '/v1/images/{id}/partitions/{selector}', '/v1/blobs/sha384/{hex}', '/cosi/{path}']) {
      const op = doc.paths[path].get;
      for (const code of ['200', '206', '304', '401', '404', '416', '503']) assert.ok(op.responses[code], `${path} ${code}`);
      const names = op.parameters.map((p: any) => (resolveRef(p.$ref) as any).name);
      for (const h of ['Range', 'If-Range', 'If-None-Match']) assert.ok(names.includes(h), `${path} takes ${h}`);
      const r206 = op.responses['206'];
      assert.ok(r206.headers['Content-Range'] && r206.headers['ETag'] && r206.headers['Content-Length'], path);
    }
    const part = doc.paths['/v1/images/{id}/partitions/{selector}'].get.responses['200'].headers;
    for (const h of ['X-Cosi-Sha384', 'X-Cosi-Compressed-Size', 'X-Cosi-Uncompressed-Size', 'X-Cosi-Path']) assert.ok(part[h], h);
    assert.ok(doc.paths['/cosi/{path}'].get.responses['307'].headers.Location);
    assert.equal(doc.openapi, '3.1.0');
  });

  test('every $ref resolves, and every path template parameter is declared by each operation', () => {
    const refs: string[] = [];
    const walk = (n: unknown): void => {
      if (Array.isArray(n)) n.forEach(walk);
      else if (n && typeof n === 'object') {
        for (const [k, v] of Object.entries(n)) {
          if (k === '$ref' && typeof v === 'string') refs.push(v);
          else walk(v);
        }
      }
    };
    walk(doc);
    assert.ok(refs.length > 50);
    for (const r of new Set(refs)) assert.ok(resolveRef(r) !== undefined, `${r} does not resolve`);
    for (const [path, item] of Object.entries<any>(doc.paths)) {
      const wanted = [...path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]);
      for (const [method, op] of Object.entries<any>(item)) {
        const declared = (op.parameters ?? []).map((p: any) => (p.$ref ? resolveRef(p.$ref) : p)).filter((p: any) => p.in === 'path').map((p: any) => p.name);
        assert.deepEqual(declared.sort(), [...wanted].sort(), `${method} ${path}`);
        assert.ok(Object.keys(op.responses).length > 0);
      }
    }
    const ids = Object.values<any>(doc.paths).flatMap((item) => Object.values<any>(item).map((op) => op.operationId));
    assert.equal(new Set(ids).size, ids.length, 'operationIds are unique');
  });
});

describe('the schemas against real responses', () => {
  /** The component schemas as one strict 2020-12 schema document. */
  function ajvFor() {
    const defs = JSON.parse(JSON.stringify(doc.components.schemas).replaceAll('#/components/schemas/', 'cosi-api#/$defs/'));
    const ajv = new Ajv2020({ strict: true, allErrors: true, validateFormats: false });
    ajv.addSchema({ $id: 'cosi-api', $defs: defs });
    return (name: string) => {
      const v = ajv.getSchema(`cosi-api#/$defs/${name}`);
      assert.ok(v, `schema ${name} compiles`);
      return v;
    };
  }

  test('every component schema compiles in strict mode', () => {
    const get = ajvFor();
    for (const name of Object.keys(doc.components.schemas)) get(name);
    // And it is the same document the code exports.
    assert.deepEqual(doc, JSON.parse(JSON.stringify(openApiDocument())));
  });

  test('/v1/images, /v1/images/{id}, /healthz and error bodies validate', async () => {
    const get = ajvFor();
    const check = (name: string, body: unknown) => {
      const v = get(name);
      assert.ok(v(body), `${name}: ${JSON.stringify(v.errors, null, 1)}`);
    };
    const list = json(await http(srv.url, '/v1/images'));
    assert.equal(list.count, 4);
    assert.ok(list.images.some((i: any) => !i.valid), 'invalid images are part of the check');
    check('ImageList', list);
    for (const i of list.images) check('ImageDetail', json(await http(srv.url, `/v1/images/${i.id}`)));
    check('Health', json(await http(srv.url, '/healthz')));
    check('Error', json(await http(srv.url, '/v1/images/nope')));
    check('Error', json(await http(srv.url, '/v1/images', { method: 'DELETE' })));
    // The schemas reject what they should: a missing field, an unknown one.
    const one = json(await http(srv.url, '/v1/images/small'));
    assert.equal(get('ImageDetail')({ ...one, surprise: 1 }), false);
    const { entries: _e, ...noEntries } = one;
    assert.equal(get('ImageDetail')(noEntries), false);
    assert.equal(get('ImageList')({ count: 1 }), false);
  });
});
