/**
 * One guest TCP connection to one host TCP connection, for QEMU's
 * `guestfwd=tcp:ADDR:PORT-cmd:node netboot-relay.js HOSTPORT`: slirp starts
 * this once per connection the guest opens, with that connection on stdin
 * and stdout, and it connects to 127.0.0.1:HOSTPORT (never another address).
 * A chardev guestfwd (`-tcp:127.0.0.1:PORT`) instead funnels every guest
 * connection into one host connection, opened when QEMU starts: iPXE's
 * sequential fetches survive that, cosi-fetch's parallel ranges do not.
 * Nothing may go to stderr: slirp hands the same socket as fd 2.
 */
import { connect } from 'node:net';

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port < 1 || port > 65535) process.exit(2);
const up = connect({ host: '127.0.0.1', port });
up.on('error', () => process.exit(1));
process.stdin.on('error', () => process.exit(1));
process.stdout.on('error', () => process.exit(1));
up.on('connect', () => {
  process.stdin.pipe(up);
  up.pipe(process.stdout);
});
// The server's end, once written out to the guest, is the connection's end (the guest's FIN
// reaches the server through pipe()'s up.end()); exit rather than wait on the other side.
process.stdout.on('finish', () => process.exit(0));
up.on('close', (hadError) => {
  if (hadError) process.exit(1);
});
