/** The pooled keep-alive undici Agents shared by every HttpSource that brings no dispatcher of its own. */
import { Agent } from './undici.js';
import { DEFAULTS } from './options.js';

const agents = new Map<number, Agent>();

/** The pooled keep-alive Agent shared by sources that bring no dispatcher (one per connect timeout). */
export function sharedAgent(connectTimeoutMs: number = DEFAULTS.connectTimeoutMs): Agent {
  let agent = agents.get(connectTimeoutMs);
  if (!agent) {
    agent = new Agent({ connect: { timeout: connectTimeoutMs }, keepAliveTimeout: 10_000, keepAliveMaxTimeout: 60_000 });
    agents.set(connectTimeoutMs, agent);
  }
  return agent;
}

/** Close the shared Agents (idle sockets are unref'd anyway; this is for tidy exits and tests). */
export async function closeSharedAgents(): Promise<void> {
  const all = [...agents.values()];
  agents.clear();
  await Promise.all(all.map((a) => a.close()));
}
