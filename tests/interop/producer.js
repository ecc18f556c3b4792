#!/usr/bin/env node
// A Conveyor producer written only against proto/ (no Conveyor SDK): submits one task,
// waits for its outcome and prints it as one line of JSON.
//
//   node tests/interop/producer.js TARGET NAME ARGS_JSON [QUEUE]
//
// Env: CONVEYOR_TRACEPARENT, when set, is sent as the task's "traceparent" header.
// Exit status: 0 when the task SUCCEEDED, 1 otherwise (including RPC errors).
'use strict';

const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTO_ROOT = path.resolve(__dirname, '..', '..', 'proto');
const LOADER_OPTIONS = {
  keepCase: true, longs: String, enums: String, defaults: true, oneofs: true, includeDirs: [PROTO_ROOT],
};
const TERMINAL = new Set([
  'TASK_STATE_SUCCEEDED', 'TASK_STATE_FAILED', 'TASK_STATE_CANCELLED', 'TASK_STATE_EXPIRED', 'TASK_STATE_DEAD',
]);
const WAIT_SECONDS = 30;
const JSON_TYPE = 'application/json';

function loadService() {
  const def = protoLoader.loadSync('conveyor/v1/task_service.proto', LOADER_OPTIONS);
  return grpc.loadPackageDefinition(def).conveyor.v1.TaskService;
}

function call(client, method, request, timeoutSeconds) {
  return new Promise((resolve, reject) => {
    const deadline = new Date(Date.now() + timeoutSeconds * 1000);
    client[method](request, { deadline }, (err, resp) => (err ? reject(err) : resolve(resp)));
  });
}

function decodeResult(result) {
  if (!result || !result.data || result.data.length === 0) return null;
  const ctype = result.content_type || JSON_TYPE;
  if (ctype !== JSON_TYPE) return result.data.toString('base64');
  return JSON.parse(result.data.toString('utf8'));
}

function decodeError(error) {
  if (!error || (!error.type && !error.message && !error.traceback)) return null;
  return { type: error.type, message: error.message, traceback: error.traceback };
}

function finish(line, code) {
  // Exit only after stdout is flushed (it may be a pipe).
  process.stdout.write(JSON.stringify(line) + '\n', () => process.exit(code));
}

async function main(argv) {
  if (argv.length < 3 || argv.length > 4) {
    process.stderr.write('usage: node producer.js TARGET NAME ARGS_JSON [QUEUE]\n');
    process.exit(2);
  }
  const [target, name, argsJson, queue = ''] = argv;
  let args;
  try {
    args = JSON.parse(argsJson);
  } catch (e) {
    process.stderr.write(`ARGS_JSON is not JSON: ${e.message}\n`);
    process.exit(2);
  }
  if (!Array.isArray(args)) {
    process.stderr.write('ARGS_JSON must be a JSON array\n');
    process.exit(2);
  }

  const TaskService = loadService();
  const client = new TaskService(target, grpc.credentials.createInsecure());
  const spec = {
    name,
    queue,
    payload: Buffer.from(JSON.stringify({ args, kwargs: {} }), 'utf8'),
    content_type: JSON_TYPE,
  };
  if (process.env.CONVEYOR_TRACEPARENT) spec.headers = { traceparent: process.env.CONVEYOR_TRACEPARENT };

  let id = null;
  try {
    const submitted = await call(client, 'Submit', { tasks: [spec] }, 30);
    id = submitted.tasks[0].id;
    let resp;
    do {
      resp = await call(client, 'GetResult', { task_id: id, wait: { seconds: WAIT_SECONDS } }, WAIT_SECONDS + 10);
    } while (!TERMINAL.has(resp.state));
    client.close();
    const ok = resp.state === 'TASK_STATE_SUCCEEDED';
    finish({
      id, state: resp.state, result: ok ? decodeResult(resp.result) : null, error: decodeError(resp.error),
    }, ok ? 0 : 1);
  } catch (err) {
    client.close();
    const code = err.code !== undefined ? grpc.status[err.code] || String(err.code) : undefined;
    finish({
      id, state: null, result: null, error: { type: 'RpcError', code, message: err.details || err.message },
    }, 1);
  }
}

main(process.argv.slice(2));
