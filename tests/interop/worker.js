#!/usr/bin/env node
// A Conveyor worker written only against proto/ (no Conveyor SDK): one WorkerService.Connect
// stream, credit-based, with heartbeats.
//
//   node tests/interop/worker.js TARGET QUEUE
//
// Prints "ready" on stdout once the scheduler accepts the hello. Runs "interop.add",
// "interop.upper", "interop.echo" (returns what it was called with, {"args", "kwargs"}) and
// "interop.fail" (fails with its argument as the message); any other task name fails (without retry). SIGTERM/SIGINT half-close the
// stream, and the process exits 0 once the scheduler has closed its side.
'use strict';

const os = require('os');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTO_ROOT = path.resolve(__dirname, '..', '..', 'proto');
const LOADER_OPTIONS = {
  keepCase: true, longs: String, enums: String, defaults: true, oneofs: true, includeDirs: [PROTO_ROOT],
};
const JSON_TYPE = 'application/json';
const CONCURRENCY = 4;

const HANDLERS = {
  'interop.add': (args) => args[0] + args[1],
  'interop.upper': (args) => args[0].toUpperCase(),
  'interop.echo': (args, kwargs) => ({ args, kwargs }),
  'interop.fail': (args) => { throw new TypeError(args[0]); },
};

function log(message) {
  process.stderr.write(`[node-worker ${process.pid}] ${message}\n`);
}

function durationMs(d, fallback) {
  if (!d) return fallback;
  const ms = Number(d.seconds || 0) * 1000 + Math.floor(Number(d.nanos || 0) / 1e6);
  return ms > 0 ? ms : fallback;
}

function decodeCall(task) {
  const ctype = task.content_type || JSON_TYPE;
  if (ctype !== JSON_TYPE) throw new Error(`cannot decode payload of type ${ctype}`);
  if (!task.payload || task.payload.length === 0) return { args: [], kwargs: {} };
  const data = JSON.parse(task.payload.toString('utf8'));
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw new Error('a payload is a JSON object {"args": [...], "kwargs": {...}}');
  }
  return { args: data.args || [], kwargs: data.kwargs || {} };
}

// Runs one leased task and returns its TaskAck.
function run(leased) {
  const { task, lease_token } = leased;
  try {
    const handler = HANDLERS[task.name];
    if (!handler) throw new Error(`unknown task ${task.name}`);
    const { args, kwargs } = decodeCall(task);
    const value = handler(args, kwargs);
    const data = JSON.stringify(value === undefined ? null : value);
    return { task_id: task.id, lease_token, result: { data: Buffer.from(data, 'utf8'), content_type: JSON_TYPE } };
  } catch (err) {
    const error = {
      type: (err && err.name) || 'Error', message: String((err && err.message) || err), traceback: (err && err.stack) || '',
    };
    return { task_id: task.id, lease_token, failure: { error, retry: false } };
  }
}

function main(argv) {
  if (argv.length !== 2) {
    process.stderr.write('usage: node worker.js TARGET QUEUE\n');
    process.exit(2);
  }
  const [target, queue] = argv;
  const def = protoLoader.loadSync('conveyor/v1/worker_service.proto', LOADER_OPTIONS);
  const WorkerService = grpc.loadPackageDefinition(def).conveyor.v1.WorkerService;
  const client = new WorkerService(target, grpc.credentials.createInsecure());
  const stream = client.Connect();

  let heartbeat = null;
  let ending = false;
  let exitCode = 0;

  const shutdown = (code) => {
    if (heartbeat) clearInterval(heartbeat);
    heartbeat = null;
    client.close();
    process.exitCode = code;
    // Nothing else keeps the loop alive; a hard exit is the fallback if something does.
    setTimeout(() => process.exit(code), 2000).unref();
  };

  const endStream = (why) => {
    if (ending) return;
    ending = true;
    log(`ending the stream (${why})`);
    if (heartbeat) clearInterval(heartbeat);
    heartbeat = null;
    stream.end();
    // If the scheduler does not close its side promptly, cancel the call.
    setTimeout(() => stream.cancel(), 5000).unref();
  };

  stream.on('data', (msg) => {
    switch (msg.kind) {
      case 'accepted': {
        const interval = durationMs(msg.accepted.heartbeat_interval, 10000);
        let beats = 0;
        heartbeat = setInterval(() => {
          if (ending) return;
          stream.write({ heartbeat: { active_task_ids: [] } });
          beats += 1;
          log(`heartbeat ${beats}`);
        }, interval);
        log(`accepted by ${msg.accepted.scheduler_id}, heartbeat every ${interval} ms`);
        process.stdout.write('ready\n');
        break;
      }
      case 'batch': {
        if (ending) return; // leases on a closing stream are handed back by the scheduler
        const acks = msg.batch.tasks.map(run);
        if (acks.length) stream.write({ report: { acks, credit: acks.length } });
        break;
      }
      case 'cancel':
        // Tasks run to completion synchronously, so there is never one to cancel.
        break;
      case 'drain':
        endStream(`drain: ${msg.drain.reason}`);
        break;
      default:
        log(`ignoring unknown message kind ${msg.kind}`);
    }
  });
  stream.on('error', (err) => {
    if (ending && err.code === grpc.status.CANCELLED) return;
    log(`stream failed: ${err.code} ${err.details || err.message}`);
    exitCode = 1;
  });
  stream.on('status', (status) => {
    log(`stream closed: ${grpc.status[status.code]} ${status.details || ''}`);
    if (!ending && status.code === grpc.status.OK) exitCode = 1; // the scheduler hung up on us
    shutdown(exitCode);
  });

  process.on('SIGTERM', () => endStream('SIGTERM'));
  process.on('SIGINT', () => endStream('SIGINT'));

  stream.write({
    hello: {
      worker_id: `node-${process.pid}`, hostname: os.hostname(), pid: process.pid, queues: [queue],
      concurrency: CONCURRENCY, task_names: Object.keys(HANDLERS), credit: CONCURRENCY,
      sdk: 'conveyor-node-interop/0.1',
    },
  });
}

main(process.argv.slice(2));
