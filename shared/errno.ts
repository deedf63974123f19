/**
 * The one table from a system error code (errno, or undici's socket codes) to
 * words a person understands and the class of the failure, used by all three
 * command lines: no bare `ENOENT` or library text reaches a user. Imports
 * errors.ts only.
 */
import { statSync } from 'node:fs';
import { CosiError, type ErrorCode } from './errors.js';

interface Entry {
  /** What happened, in words. */
  text: string;
  code: ErrorCode;
  /** What to do, when there is one thing to say. */
  hint?: string;
}

const TABLE: Readonly<Record<string, Entry>> = {
  // Files and devices.
  ENOENT: { text: 'no such file or directory', code: 'COSI_ERR_IO', hint: 'check the path' },
  ENOTDIR: { text: 'a part of the path is not a directory', code: 'COSI_ERR_IO', hint: 'check the path' },
  EISDIR: { text: 'is a directory, not a file', code: 'COSI_ERR_IO', hint: 'give a file' },
  EACCES: { text: 'permission denied', code: 'COSI_ERR_IO', hint: 'check its permissions (or run as a user allowed to)' },
  EPERM: { text: 'operation not permitted', code: 'COSI_ERR_IO' },
  EEXIST: { text: 'already exists', code: 'COSI_ERR_IO' },
  ENOSPC: { text: 'no space left on the device', code: 'COSI_ERR_IO', hint: 'free some space or write elsewhere' },
  EDQUOT: { text: 'disk quota exceeded', code: 'COSI_ERR_IO' },
  EROFS: { text: 'read-only file system', code: 'COSI_ERR_IO', hint: 'write elsewhere' },
  EFBIG: { text: 'file too large for this file system', code: 'COSI_ERR_IO' },
  ENAMETOOLONG: { text: 'file name too long', code: 'COSI_ERR_IO' },
  ELOOP: { text: 'too many symbolic links', code: 'COSI_ERR_IO' },
  EMFILE: { text: 'too many open files', code: 'COSI_ERR_IO', hint: 'raise the limit (ulimit -n)' },
  ENFILE: { text: 'too many open files on this system', code: 'COSI_ERR_IO' },
  EBUSY: { text: 'busy (mounted or in use)', code: 'COSI_ERR_IO' },
  EIO: { text: 'input/output error (a failing disk or medium?)', code: 'COSI_ERR_IO' },
  ENXIO: { text: 'no such device', code: 'COSI_ERR_IO' },
  ENODEV: { text: 'no such device', code: 'COSI_ERR_IO' },
  EINVAL: { text: 'invalid argument', code: 'COSI_ERR_IO' },
  EBADF: { text: 'the file is closed or not open for writing', code: 'COSI_ERR_IO' },
  EXDEV: { text: 'cannot rename across file systems', code: 'COSI_ERR_IO' },
  // Listening.
  EADDRINUSE: { text: 'address already in use', code: 'COSI_ERR_IO', hint: 'another program listens there: stop it, or pick another port (--port 0 picks a free one)' },
  EADDRNOTAVAIL: { text: 'not an address of this machine', code: 'COSI_ERR_IO', hint: 'use one of its addresses, 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)' },
  // Connections.
  ECONNREFUSED: { text: 'connection refused', code: 'COSI_ERR_NETWORK' },
  ECONNRESET: { text: 'connection reset by peer', code: 'COSI_ERR_NETWORK' },
  ECONNABORTED: { text: 'connection aborted', code: 'COSI_ERR_NETWORK' },
  EPIPE: { text: 'connection broken', code: 'COSI_ERR_NETWORK' },
  ENOTFOUND: { text: 'host not found', code: 'COSI_ERR_NETWORK', hint: 'check the host name' },
  EAI_AGAIN: { text: 'DNS lookup failed (temporary)', code: 'COSI_ERR_NETWORK' },
  EHOSTUNREACH: { text: 'host unreachable', code: 'COSI_ERR_NETWORK' },
  ENETUNREACH: { text: 'network unreachable', code: 'COSI_ERR_NETWORK' },
  ENETDOWN: { text: 'network down', code: 'COSI_ERR_NETWORK' },
  ETIMEDOUT: { text: 'timed out', code: 'COSI_ERR_TIMEOUT' },
  UND_ERR_SOCKET: { text: 'connection closed by the server', code: 'COSI_ERR_NETWORK' },
  UND_ERR_CLOSED: { text: 'connection closed', code: 'COSI_ERR_NETWORK' },
  UND_ERR_RES_CONTENT_LENGTH_MISMATCH: { text: 'body shorter than its Content-Length', code: 'COSI_ERR_NETWORK' },
  // TLS (Node's and OpenSSL's codes).
  ERR_SSL_WRONG_VERSION_NUMBER: { text: 'the answer looks like plain HTTP, not TLS', code: 'COSI_ERR_TLS', hint: 'use http:// instead of https://' },
  ERR_SSL_PACKET_LENGTH_TOO_LONG: { text: 'the answer looks like plain HTTP, not TLS', code: 'COSI_ERR_TLS', hint: 'use http:// instead of https://' },
  DEPTH_ZERO_SELF_SIGNED_CERT: { text: 'self-signed certificate, not trusted', code: 'COSI_ERR_TLS', hint: 'add its CA with NODE_EXTRA_CA_CERTS=FILE' },
  SELF_SIGNED_CERT_IN_CHAIN: { text: 'self-signed certificate in the chain, not trusted', code: 'COSI_ERR_TLS', hint: 'add its CA with NODE_EXTRA_CA_CERTS=FILE' },
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: { text: 'certificate from an unknown issuer', code: 'COSI_ERR_TLS', hint: 'add its CA with NODE_EXTRA_CA_CERTS=FILE' },
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: { text: 'certificate from an unknown issuer', code: 'COSI_ERR_TLS', hint: 'add its CA with NODE_EXTRA_CA_CERTS=FILE' },
  CERT_HAS_EXPIRED: { text: 'the certificate has expired', code: 'COSI_ERR_TLS' },
  ERR_TLS_CERT_ALTNAME_INVALID: { text: 'the certificate is not for this host name', code: 'COSI_ERR_TLS' },
};

/** The system code of an error (its own, or its cause's), if the table knows it. */
export function errnoOf(err: unknown): string | undefined {
  for (let e = err, i = 0; e && typeof e === 'object' && i < 4; e = (e as { cause?: unknown }).cause, i++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && code in TABLE) return code;
  }
  return undefined;
}

/** The words for a code, e.g. 'connection refused'; undefined when the table does not know it. */
export function errnoText(code: string | undefined): string | undefined {
  return code === undefined ? undefined : TABLE[code]?.text;
}

/** An error's words: the table's text for a known code, else its message with Node's "ECODE: " prefix cut. */
export function describeSystemError(err: unknown): string {
  const known = errnoText(errnoOf(err));
  if (known) return known;
  const msg = err instanceof Error ? err.message : String(err);
  return msg.replace(/^[A-Z][A-Z_]+: /, '').replace(/, (open|read|write|stat|mkdir|rename|scandir|lstat|unlink) '.*'$/, '');
}

export interface SystemErrorContext {
  /** Set when the operation created or wrote `path`: a missing path then means a missing directory. */
  writing?: boolean;
  /** Overrides the class (a missing --token-file is a usage mistake, say). */
  code?: ErrorCode;
  /** Overrides the table's hint. */
  hint?: string;
}

/**
 * `what: words; hint` as a CosiError of the code's class, e.g.
 * `cannot open out/x.img: the directory out does not exist; create it first`.
 * `what` names the operation and its object; the error's own message is never shown.
 */
export function systemError(what: string, err: unknown, ctx: SystemErrorContext & { dir?: string } = {}): CosiError {
  if (err instanceof CosiError) return err;
  const code = errnoOf(err);
  const entry = code === undefined ? undefined : TABLE[code];
  let text = entry?.text ?? describeSystemError(err);
  let hint = ctx.hint ?? entry?.hint;
  if (code === 'ENOENT' && ctx.writing && ctx.dir !== undefined) {
    // Usually the directory is missing; but /proc, /sys and the like exist and answer ENOENT to a create.
    if (!exists(ctx.dir)) return missingDirectory(what, ctx.dir, { cause: err, code: ctx.code });
    text = `the directory ${ctx.dir} exists, but its file system does not let files be created there`;
    hint = 'write the output elsewhere';
  }
  return new CosiError(ctx.code ?? entry?.code ?? 'COSI_ERR_IO', `${what}: ${text}${hint ? `; ${hint}` : ''}`, { cause: err, details: code ? { errno: code } : undefined });
}

function exists(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * `what: the directory DIR does not exist; create it first (mkdir -p DIR)`,
 * an io error: the one wording for every output whose directory is missing.
 */
export function missingDirectory(what: string, dir: string, opts: { cause?: unknown; code?: ErrorCode } = {}): CosiError {
  return new CosiError(opts.code ?? 'COSI_ERR_IO', `${what}: the directory ${dir} does not exist; create it first (mkdir -p ${dir})`, { cause: opts.cause, details: { errno: 'ENOENT' } });
}
