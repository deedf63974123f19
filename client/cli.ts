#!/usr/bin/env node
/**
 * cosi-fetch's entry point (main.ts does the work). Node >= 22.1 keeps a
 * compile cache of the modules on disk when asked, so the second start skips
 * recompiling undici and ours: start-up is a fixed cost on every install,
 * about 40 ms of the 250 ms before the first request. It must be enabled
 * before those modules load, hence the dynamic import.
 */
import module from 'node:module';

(module as { enableCompileCache?: () => unknown }).enableCompileCache?.();
await import('./main.js');
