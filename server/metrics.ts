/**
 * A handful of counters and gauges rendered in the Prometheus text format.
 * Small on purpose: the server needs counters with labels and nothing else,
 * so a client library would be more code than this.
 */

type Labels = Record<string, string>;

interface Family {
  help: string;
  type: 'counter' | 'gauge';
  /** How workers' samples combine (server/cluster/): summed, or the same in each (catalog-wide gauges), taking the largest. */
  merge: 'sum' | 'max';
  values: Map<string, { labels: Labels; value: number }>;
  /** Gauges read at scrape time. */
  collect?: () => Array<{ labels: Labels; value: number }>;
}

function labelKey(labels: Labels): string {
  return Object.keys(labels)
    .sort()
    .map((k) => `${k}=${labels[k]}`)
    .join(',');
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function renderLabels(labels: Labels): string {
  const keys = Object.keys(labels);
  if (keys.length === 0) return '';
  return `{${keys.map((k) => `${k}="${escapeLabel(labels[k]!)}"`).join(',')}}`;
}

export class Metrics {
  private readonly families = new Map<string, Family>();

  constructor() {
    this.counter('cosi_http_requests_total', 'HTTP requests by route and status.');
    this.counter('cosi_http_bytes_served_total', 'Body bytes written by byte endpoints, by route.');
    this.counter('cosi_http_range_requests_total', 'Requests answered with 206, by kind (single, multipart).');
    this.counter('cosi_http_aborted_total', 'Transfers cut short (client gone, read error or hash mismatch), by reason.');
    this.counter('cosi_index_runs_total', 'Archive files indexed.');
    this.counter('cosi_index_errors_total', 'Archive files indexed as invalid or unreadable.');
    this.counter('cosi_verify_corrupt_total', 'Partitions whose stored bytes failed the --verify hash.');
  }

  counter(name: string, help: string): void {
    if (!this.families.has(name)) this.families.set(name, { help, type: 'counter', merge: 'sum', values: new Map() });
  }

  gauge(name: string, help: string, collect: () => Array<{ labels: Labels; value: number }> | number, merge: 'sum' | 'max' = 'sum'): void {
    this.families.set(name, {
      help,
      type: 'gauge',
      merge,
      values: new Map(),
      collect: () => {
        const v = collect();
        return typeof v === 'number' ? [{ labels: {}, value: v }] : v;
      },
    });
  }

  inc(name: string, labels: Labels = {}, by = 1): void {
    const f = this.families.get(name);
    if (!f) throw new Error(`unknown metric ${name}`);
    const key = labelKey(labels);
    const cur = f.values.get(key);
    if (cur) cur.value += by;
    else f.values.set(key, { labels, value: by });
  }

  /**
   * The live sample for `labels`, created at 0 if new: hot paths keep it and add to
   * `.value` directly, skipping the label key built per inc().
   */
  series(name: string, labels: Labels = {}): { value: number } {
    const f = this.families.get(name);
    if (!f) throw new Error(`unknown metric ${name}`);
    const key = labelKey(labels);
    let cur = f.values.get(key);
    if (!cur) f.values.set(key, (cur = { labels, value: 0 }));
    return cur;
  }

  /** Current value, for tests and the health endpoint. */
  value(name: string, labels: Labels = {}): number {
    return this.families.get(name)?.values.get(labelKey(labels))?.value ?? 0;
  }

  /** Every family with its current samples: what a worker hands the primary to sum (server/cluster/). */
  snapshot(): FamilySnapshot[] {
    return [...this.families].map(([name, f]) => ({
      name,
      help: f.help,
      type: f.type,
      merge: f.merge,
      samples: f.collect ? f.collect() : [...f.values.values()].map((v) => ({ labels: v.labels, value: v.value })),
    }));
  }

  render(): string {
    return renderFamilies(this.snapshot());
  }
}

export interface FamilySnapshot {
  name: string;
  help: string;
  type: 'counter' | 'gauge';
  merge: 'sum' | 'max';
  samples: Array<{ labels: Labels; value: number }>;
}

/** The Prometheus text of some families. */
export function renderFamilies(families: readonly FamilySnapshot[]): string {
  const out: string[] = [];
  for (const f of families) {
    out.push(`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} ${f.type}`);
    for (const s of f.samples) out.push(`${f.name}${renderLabels(s.labels)} ${s.value}`);
  }
  return out.join('\n') + '\n';
}

/** Several processes' snapshots as one: each series summed (or the largest taken), in first-seen order. */
export function mergeSnapshots(snapshots: ReadonlyArray<readonly FamilySnapshot[]>): FamilySnapshot[] {
  const out = new Map<string, FamilySnapshot & { byKey: Map<string, { labels: Labels; value: number }> }>();
  for (const families of snapshots) {
    for (const f of families) {
      let m = out.get(f.name);
      if (!m) out.set(f.name, (m = { ...f, samples: [], byKey: new Map() }));
      for (const s of f.samples) {
        const key = labelKey(s.labels);
        const cur = m.byKey.get(key);
        if (!cur) m.byKey.set(key, { labels: s.labels, value: s.value });
        else cur.value = m.merge === 'max' ? Math.max(cur.value, s.value) : cur.value + s.value;
      }
    }
  }
  return [...out.values()].map(({ byKey, ...f }) => ({ ...f, samples: [...byKey.values()] }));
}
