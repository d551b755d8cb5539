// Preloaded into a `cairn` CLI process by cli-request-ab.ts (NODE_OPTIONS --import): when a write
// to a network peer carries the command named by CAIRN_BENCH_PROBE_COMMAND (a NATS subject
// `….cmd.<service>.<Command>`), prints the main thread's CPU so far and the time on one stderr
// line (`cairn-request-probe {json}`) and exits 0 without sending it: the command's whole path to
// its send, without the work the command would start. With CAIRN_BENCH_PROBE_MARKS=1 the line
// also holds a timeline (TCP connect, TLS, each read and write: ms since the process started,
// main-thread CPU ms). With CAIRN_BENCH_PROBE_SEND=1 it prints the line and lets the request go
// (product.ts: the real restore, with the CLI's own part of "CLI start-up to the request recorded").
// Plain JavaScript: it runs before the CLI, without tsx.
import { Buffer } from 'node:buffer';
import net from 'node:net';
import { performance } from 'node:perf_hooks';

const command = process.env.CAIRN_BENCH_PROBE_COMMAND;
if (command) {
  const send = process.env.CAIRN_BENCH_PROBE_SEND === '1';
  let probed = false;
  const marks = process.env.CAIRN_BENCH_PROBE_MARKS === '1' ? [] : undefined;
  const cpuMs = () => { const c = process.threadCpuUsage(); return Math.round((c.user + c.system) / 100) / 10; };
  const mark = (what) => { if (marks && marks.length < 100) marks.push([Math.round(performance.now() * 10) / 10, cpuMs(), what]); };
  const text = (chunk) => typeof chunk === 'string' ? chunk
    : chunk instanceof Uint8Array ? Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString('latin1') : '';
  const write = net.Socket.prototype.write;
  // Only sockets with a peer port: stdout and stderr are sockets too when they are pipes.
  net.Socket.prototype.write = function (chunk, ...rest) {
    if (this.remotePort && !probed) {
      const s = text(chunk);
      mark(`write ${s.slice(0, 48).replace(/\s+/g, ' ')}`);
      if (s.includes(`.${command} `)) {
        probed = true;
        process.stderr.write(`cairn-request-probe ${JSON.stringify({ cpuMs: cpuMs(), at: Date.now(), ...(marks ? { marks } : {}) })}\n`);
        if (!send) process.exit(0);
      }
    }
    return write.call(this, chunk, ...rest);
  };
  if (marks) {
    const emit = net.Socket.prototype.emit;
    net.Socket.prototype.emit = function (event, ...args) {
      if (this.remotePort && (event === 'connect' || event === 'secureConnect' || event === 'data')) {
        mark(event === 'data' ? `read ${text(args[0]).slice(0, 32).replace(/\s+/g, ' ')}` : event);
      }
      return emit.call(this, event, ...args);
    };
    mark('probe loaded');
  }
}
