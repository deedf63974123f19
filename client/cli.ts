#!/usr/bin/env node
/**
 * cosi-fetch's entry point (cli/main.ts does the work). What is set here must be
 * in place before cli/main.ts and its dependencies load (about 150 ms here),
 * hence the dynamic imports:
 *
 * - Node >= 22.1 keeps a compile cache of the modules on disk when asked, so
 *   the second start skips recompiling undici and ours (about 40 ms).
 * - The decode worker boots on the other core meanwhile (60-100 ms to a
 *   ready thread), for every command that will decode. A wrong guess costs
 *   one idle thread, which does not keep the process alive.
 * - Two V8 flags. The young generation is kept at its initial size: every
 *   socket read is a fresh 64 KiB buffer, garbage as soon as it is hashed
 *   and copied, but freed only by a scavenge, and a young generation left
 *   to grow collects so rarely that 20-35 MiB of them wait, which the
 *   allocator then hands back and faults in again (4 GiB root: peak RSS
 *   272 -> 250 MiB, 10% fewer page faults). And undici's llhttp stays in
 *   the baseline WebAssembly tier: re-compiling it with the optimizing
 *   tier took about 0.2 s of CPU on a background thread, on a 2-core
 *   machine that decodes on both, for a parser that only skips over bodies.
 *   Both are V8 internals, so they are set only on the Node majors checked.
 */
import module from 'node:module';
import v8 from 'node:v8';

(module as { enableCompileCache?: () => unknown }).enableCompileCache?.();
const major = Number(process.versions.node.split('.')[0]);
if (major >= 20 && major <= 24) v8.setFlagsFromString('--semi-space-growth-factor=1 --no-wasm-tier-up');
const args = process.argv.slice(2);
if (args[0] !== 'inspect' && !args.includes('-h') && !args.includes('--help')) {
  (await import('../shared/zstd/sink.js')).warmDecoder();
}
await import('./cli/main.js');
