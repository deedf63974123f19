/** Why the server could not listen, in words, with what to do (another port, another address). */
import { systemError } from '../shared/errno.js';
import type { CosiError } from '../shared/errors.js';

export function listenError(host: string, port: number, err: NodeJS.ErrnoException): CosiError {
  const where = `cannot listen on ${host}:${port}`;
  if (err.code === 'EADDRINUSE') {
    return systemError(where, err, { hint: `another program (another cosi-server?) holds port ${port}: stop it, or pick another with --port ${port === 8080 ? 8081 : port + 1} (--port 0 picks a free one)` });
  }
  if (err.code === 'EADDRNOTAVAIL') {
    return systemError(where, err, { hint: `use one of this machine's own addresses, 127.0.0.1 (local only) or 0.0.0.0 (every interface)` });
  }
  if (err.code === 'EACCES' && port < 1024) return systemError(where, err, { hint: `ports below 1024 need root or CAP_NET_BIND_SERVICE: pick one from 1024 up` });
  if (err.code === 'ENOTFOUND' || err.code === 'EAI_AGAIN') return systemError(where, err, { code: 'COSI_ERR_USAGE', hint: `--host ${host} is not a known host name or address` });
  return systemError(where, err);
}
