/**
 * One network boot of a QEMU virtual machine (TCG: no KVM here) for the
 * netboot test: Debian's iPXE ROM on a virtio NIC, a blank virtio disk, and
 * user-mode networking with restrict=on, so the guest reaches nothing but
 * one address forwarded to cosi-server on 127.0.0.1. The serial console is
 * written to a file line by line with the host's elapsed time, and QEMU runs
 * in its own process group, which is killed on every way out: the boot's
 * end, its deadline, an exception, or the test process exiting.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { REPO } from './fixtures.js';

/** The guest's name for cosi-server; slirp answers for it only through the forward. */
export const SERVER_IN_GUEST = '10.0.2.100';
const RELAY = join(REPO, 'dist', 'test', 'netboot-relay.js');

const live = new Set<ChildProcess>();
function killGroup(child: ChildProcess): void {
  if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  live.delete(child);
}
// A test runner timeout or a crash ends this process without our finally blocks: no QEMU may outlive it.
// QEMU runs in its own process group (so it can be killed whole), which a Ctrl-C to ours does not reach:
// a signal kills every live group, then ends this process as the signal would have.
process.on('exit', () => {
  for (const c of live) killGroup(c);
});
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(sig, () => {
    for (const c of live) killGroup(c);
    process.kill(process.pid, sig);
  });
}

export interface BootOptions {
  /** cosi-server's port on 127.0.0.1. */
  port: number;
  /** Path of the iPXE script on cosi-server, given to iPXE as the DHCP boot file. */
  bootPath: string;
  /** The blank raw disk the guest sees as /dev/vda. */
  disk: string;
  serialLog: string;
  timeoutMs: number;
  memMiB: number;
}

export interface BootResult {
  /** QEMU's exit code (0 after the guest powered off), null if it was killed. */
  code: number | null;
  timedOut: boolean;
  ms: number;
  serial: string;
  /** Host milliseconds from QEMU's start to the first serial line matching each mark. */
  marks: Record<string, number>;
}

const MARKS: Array<[string, RegExp]> = [
  // The kernel's first line reaches the serial port when its console registers, not when it starts.
  ['console', /Linux version /],
  ['init', /Run \/init as init process/],
  ['network', /cosi-init: network up/],
  ['install', /cosi-init: starting the install/],
  ['done', /cosi-init: install (finished|FAILED)/],
];

export function qemuArgs(o: BootOptions): string[] {
  // slirp splits the -netdev value on commas and runs cmd: through /bin/sh.
  if (/[\s,'"\\]/.test(process.execPath + RELAY)) throw new Error(`the relay path must have no spaces or commas: ${process.execPath} ${RELAY}`);
  const netdev = [
    'user,id=n0,restrict=on',
    `guestfwd=tcp:${SERVER_IN_GUEST}:80-cmd:${process.execPath} ${RELAY} ${o.port}`,
    `bootfile=http://${SERVER_IN_GUEST}${o.bootPath}`,
  ].join(',');
  return [
    '-machine', 'pc,accel=tcg', '-cpu', 'max', '-smp', '1', '-m', String(o.memMiB),
    '-nodefaults', '-display', 'none', '-vga', 'none', '-monitor', 'none', '-serial', 'stdio', '-no-reboot',
    '-netdev', netdev, '-device', 'virtio-net-pci,netdev=n0',
    '-drive', `file=${o.disk},format=raw,if=virtio`,
    '-boot', 'n',
  ];
}

/** Boot until the guest powers off or the deadline passes; QEMU is gone when this returns or throws. */
export async function bootVm(o: BootOptions): Promise<BootResult> {
  const t0 = performance.now();
  const out = createWriteStream(o.serialLog);
  const lines: string[] = [];
  const marks: Record<string, number> = {};
  let partial = '';
  const addLine = (line: string) => {
    const ms = performance.now() - t0;
    const clean = line.replace(/\r/g, '');
    lines.push(clean);
    out.write(`${(ms / 1000).toFixed(1).padStart(6)} | ${clean}\n`);
    for (const [name, re] of MARKS) if (marks[name] === undefined && re.test(clean)) marks[name] = ms;
  };
  const child = spawn('qemu-system-x86_64', qemuArgs(o), { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    killGroup(child);
  }, o.timeoutMs);
  try {
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (s: string) => {
      const parts = (partial + s).split('\n');
      partial = parts.pop()!;
      for (const p of parts) addLine(p);
    });
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (s: string) => {
      for (const p of s.split('\n')) if (p) addLine(`[qemu] ${p}`);
    });
    const code = await new Promise<number | null>((resolve, reject) => {
      child.on('error', (e) => reject(new Error(`cannot run qemu-system-x86_64 (apt-get install qemu-system-x86 ipxe-qemu): ${e.message}`)));
      child.on('close', (c) => resolve(c));
    });
    if (partial) addLine(partial);
    return { code, timedOut, ms: performance.now() - t0, serial: lines.join('\n'), marks };
  } finally {
    clearTimeout(timer);
    killGroup(child);
    await new Promise<void>((resolve) => out.end(resolve));
  }
}
