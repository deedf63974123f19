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

/** One line per image, redrawn in place (cursor up over the block of lines). */
export class BarProgress extends Tracking {
  private drawn = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly out: NodeJS.WriteStream, intervalMs = 200) {
    super(intervalMs);
  }

  protected emit(): void {
    // Redraw on a timer too, so rate and ETA move while a stalled server is retried.
    this.timer ??= setInterval(() => this.draw(), 1000).unref();
    this.draw();
  }

  private draw(): void {
    const width = Math.max(20, Math.min(40, (this.out.columns ?? 80) - 60));
    const lines: string[] = [];
    const now = Date.now();
    for (const s of this.items.values()) {
      const frac = s.total > 0 ? Math.min(1, s.writtenBytes / s.total) : 1;
      const fill = Math.round(frac * width);
      const { rate, eta } = rateAndEta(s, now);
      const state = s.done ? (s.ok ? 'done' : 'FAILED') : `${human(rate)}/s ETA ${clock(eta)}`;
      lines.push(`${s.label.padEnd(14).slice(0, 14)} [${'#'.repeat(fill)}${'-'.repeat(width - fill)}] ${String(Math.floor(frac * 100)).padStart(3)}% ${human(s.writtenBytes)} ${state}`);
    }
    let text = this.drawn > 0 ? `\x1b[${this.drawn}A` : '';
    text += lines.map((l) => `\r\x1b[2K${l}`).join('\n') + '\n';
    this.drawn = lines.length;
    this.out.write(text);
  }

  override close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (this.items.size > 0) this.draw();
  }
}
