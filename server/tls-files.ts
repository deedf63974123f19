/**
 * --tls-cert and --tls-key read and tried together before the server starts:
 * a file that is no PEM certificate or key, or a key that does not belong to
 * the certificate, is a usage error in one line of ours, never OpenSSL's text.
 */
import { readFile } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import { CosiError } from '../shared/errors.js';
import { systemError } from '../shared/errno.js';

export interface TlsFiles {
  cert: Buffer;
  key: Buffer;
}

const MAKE_ONE = 'e.g. openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -subj /CN=HOST';

async function read(flag: string, path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    throw systemError(`${flag} ${path}`, err, { code: 'COSI_ERR_USAGE' });
  }
}

/** Why OpenSSL refused the pair, in words: which file is wrong, or that they do not belong together. */
function explain(certPath: string, keyPath: string, cert: Buffer, key: Buffer, err: unknown): string {
  const certText = cert.toString('latin1');
  const keyText = key.toString('latin1');
  if (!certText.includes('-----BEGIN CERTIFICATE-----')) {
    return `--tls-cert ${certPath} is not a PEM certificate (no -----BEGIN CERTIFICATE----- line); give the certificate in PEM form (${MAKE_ONE})`;
  }
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(keyText)) {
    return `--tls-key ${keyPath} is not a PEM private key (no -----BEGIN ... PRIVATE KEY----- line); give the certificate's key in PEM form (${MAKE_ONE})`;
  }
  if (keyText.includes('ENCRYPTED')) {
    return `--tls-key ${keyPath} is encrypted with a passphrase, which cosi-server cannot ask for; decrypt it first (openssl pkey -in KEY -out key.pem)`;
  }
  const code = String((err as { code?: unknown }).code ?? '');
  if (/MISMATCH/.test(code)) {
    return `--tls-key ${keyPath} does not belong to the certificate in --tls-cert ${certPath}; give the key the certificate was made with`;
  }
  return `--tls-cert ${certPath} and --tls-key ${keyPath} are not a usable PEM certificate and private key (a damaged file, or a key of another certificate); give the pair in PEM form (${MAKE_ONE})`;
}

/** Both files, read and checked as a pair: what createHttpsServer can use without throwing. */
export async function loadTlsFiles(certPath: string, keyPath: string): Promise<TlsFiles> {
  const [cert, key] = await Promise.all([read('--tls-cert', certPath), read('--tls-key', keyPath)]);
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    throw new CosiError('COSI_ERR_USAGE', explain(certPath, keyPath, cert, key, err), { cause: err });
  }
  return { cert, key };
}
