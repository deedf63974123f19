/**
 * Progress reporting: a redrawn bar per image when stderr is a terminal, one
 * JSON object per line for installer UIs (--progress=json), or nothing.
 * Updates are throttled so a fast local fetch does not spend its time printing.
 */
import type { Writable } from 'node:stream';
import { formatBytes } from '../shared/units.js';

export interface ProgressItem {
  /** The image path in the archive: the key for every update. */
  path: string;
  /** Short name for humans (selector-like: 'root', 'partition 3'). */
  label: string;
  total: number;
  compressedTotal: number;
}

export interface Progress {
  begin(item: ProgressItem): void;
  compressed(path: string, n: number): void;
  written(path: string, n: number): void;
  end(path: string, ok: boolean): void;
  close(): void;
  /** Print a line (a warning, a retry) without tearing what is drawn; absent: the caller writes it. */
  note?(line: string): void;
}

interface State extends ProgressItem {
  compressedBytes: number;
  writtenBytes: number;
  started: number;
  lastEmit: number;
  done?: boolean;
  ok?: boolean;
}

export class NullProgress implements Progress {
  begin(): void {}
  compressed(): void {}
  written(): void {}
  end(): void {}
  close(): void {}
}

function rateAndEta(s: State, now: number): { rate: number; eta: number | null } {
  const secs = Math.max((now - s.started) / 1000, 1e-3);
  const rate = s.writtenBytes / secs;
  const left = s.total - s.writtenBytes;
  return { rate, eta: rate > 0 ? left / rate : null };
}

abstract class Tracking implements Progress {
  protected readonly items = new Map<string, State>();
  constructor(protected readonly intervalMs: number) {}

  begin(item: ProgressItem): void {
    const now = Date.now();
    this.items.set(item.path, { ...item, compressedBytes: 0, writtenBytes: 0, started: now, lastEmit: 0 });
    this.emit(item.path, 'start');
  }

  compressed(path: string, n: number): void {
    const s = this.items.get(path);
    if (s) s.compressedBytes += n;
  }

  written(path: string, n: number): void {
    const s = this.items.get(path);
    if (!s) return;
    s.writtenBytes += n;
    const now = Date.now();
    if (now - s.lastEmit >= this.intervalMs) {
      s.lastEmit = now;
      this.emit(path, 'progress');
    }
  }

  end(path: string, ok: boolean): void {
    const s = this.items.get(path);
    if (!s) return;
    s.done = true;
    s.ok = ok;
    this.emit(path, ok ? 'done' : 'failed');
  }

  close(): void {}

  protected abstract emit(path: string, event: string): void;
}

export class JsonProgress extends Tracking {
  constructor(private readonly out: Writable, intervalMs = 250) {
    super(intervalMs);
  }

  protected emit(path: string, event: string): void {
    const s = this.items.get(path)!;
    const now = Date.now();
    const { rate, eta } = rateAndEta(s, now);
    const line = {
      event,
      path: s.path,
      label: s.label,
      bytes: s.writtenBytes,
      total: s.total,
      compressedBytes: s.compressedBytes,
      compressedTotal: s.compressedTotal,
      rate: Math.round(rate),
      eta: eta === null ? null : Math.round(eta * 10) / 10,
      elapsed: Math.round(now - s.started) / 1000,
    };
    this.out.write(JSON.stringify(line) + '\n');
  }
}

const human = (n: number): string => formatBytes(n);

function clock(secs: number | null): string {
  if (secs === null || !Number.isFinite(secs)) return '--:--';
  const s = Math.round(secs);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

/**
 * One status line for the whole command (every image's bytes summed), redrawn
 * in place: a line never longer than the terminal is wide never wraps, so
 * `\r` and erase-line always reach all of it, with --disk's many images or
 * jobs in parallel alike. Lines printed meanwhile (warnings, retries) go
 * above it through note(); close() erases it, so the command's summary is
 * the last thing on the screen.
 */
export class BarProgress extends Tracking {
  private timer: NodeJS.Timeout | undefined;
  /** Length of the status line on screen (0: none drawn). */
  private shown = 0;
  private closed = false;
  private readonly started = Date.now();
  private readonly onResize = (): void => this.resized();

  constructor(private readonly out: NodeJS.WriteStream, intervalMs = 200) {
    super(intervalMs);
  }

  protected emit(): void {
    if (this.closed) return;
    if (!this.timer) {
      // Redraw on a timer too, so rate and ETA move while a stalled server is retried.
      this.timer = setInterval(() => this.draw(), 1000).unref();
      this.out.on('resize', this.onResize);
    }
    this.draw();
  }

  note(line: string): void {
    this.out.write(`${this.erase()}${line}\n`);
    if (!this.closed && this.items.size > 0) this.draw();
  }

  /**
   * Asked of the terminal (one ioctl) at each draw: `columns` and
   * getWindowSize() are refreshed only once SIGWINCH is handled, and a line
   * drawn in between for the old width is what a reflowing terminal garbles.
   */
  private width(): number {
    const handle = (this.out as unknown as { _handle?: { getWindowSize?: (size: number[]) => number } })._handle;
    const size: number[] = [];
    const cols = typeof handle?.getWindowSize === 'function' && handle.getWindowSize(size) === 0 ? size[0] : this.out.columns;
    return Math.max(20, cols || 80);
  }

  /** Back to the start of the status line and clear it (and what a narrower terminal wrapped it into). */
  private erase(): string {
    if (this.shown === 0) return '';
    // Terminals that reflow (tmux, VTE, kitty, iTerm2) wrap an old line that is now too wide.
    const rows = Math.ceil(this.shown / this.width());
    this.shown = 0;
    return rows > 1 ? `\r\x1b[${rows - 1}A\x1b[J` : '\r\x1b[2K';
  }

  private resized(): void {
    if (!this.closed && this.items.size > 0) this.draw();
  }

  private draw(): void {
    const line = statusLine([...this.items.values()], Date.now(), this.started, this.width() - 1);
    this.out.write(`${this.erase()}${line}`);
    this.shown = line.length;
  }

  override close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.out.off('resize', this.onResize);
    if (!this.closed) this.out.write(this.erase());
    this.closed = true;
  }
}

/** The status line in at most `max` characters: the least useful parts go first when it does not fit. */
export function statusLine(items: State[], now: number, started: number, max: number): string {
  let total = 0;
  let written = 0;
  let net = 0;
  for (const s of items) {
    total += s.total;
    written += Math.min(s.writtenBytes, s.total);
    net += s.compressedBytes;
  }
  const frac = total > 0 ? Math.min(1, written / total) : 1;
  const done = items.length > 0 && items.every((s) => s.done);
  const failed = items.some((s) => s.done && !s.ok);
  const active = items.filter((s) => !s.done);
  const label = items.length === 1 ? items[0]!.label : `${items.length - active.length}/${items.length} images${active.length ? ` (${active.map((s) => s.label).join(', ')})` : ''}`;
  const secs = Math.max((now - started) / 1000, 1e-3);
  const rate = written / secs;
  const eta = rate > 0 ? (total - written) / rate : null;
  const pct = `${String(Math.floor(frac * 100)).padStart(3)}%`;
  const sizes = `${human(written)}/${human(total)}`;
  const netText = `net ${human(net)}`;
  const ended = failed ? 'FAILED' : done ? 'done' : undefined;
  const speed = ended ?? `${human(rate)}/s ETA ${clock(eta)}`;
  // From the fullest to the barest; the first that fits with a bar of 10 or more wins.
  const candidates: Array<[string, string[]]> = [
    [label, [pct, sizes, netText, speed]],
    ['', [pct, sizes, netText, speed]],
    ['', [pct, sizes, speed]],
    ['', [pct, sizes, ...(ended ? [ended] : [])]],
  ];
  for (const [head, parts] of candidates) {
    const lead = head ? `${head} ` : '';
    const rest = ` ${parts.join(' ')}`;
    const bar = Math.min(40, max - lead.length - rest.length - 2);
    if (bar >= 10) {
      const fill = Math.round(frac * bar);
      return `${lead}[${'#'.repeat(fill)}${'-'.repeat(bar - fill)}]${rest}`;
    }
  }
  return `${pct} ${sizes}${ended ? ` ${ended}` : ''}`.slice(0, max);
}
