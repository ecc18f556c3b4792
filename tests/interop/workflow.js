#!/usr/bin/env node
// A Conveyor workflow producer written only against proto/ (no Conveyor SDK): builds a chord,
// one header node per entry of HEADER_ARGS_JSON running HEADER_NAME, and a callback node running
// CALLBACK_NAME after all of them, which receives the list of their results (parent_results
// PARENT_RESULTS_LIST, in the order of its parents) as its first argument; submits it with
// WorkflowService.SubmitWorkflow, follows it with WatchWorkflow until it ends, and prints the
// outcome as one line of JSON: {id, state, result, error, nodes: [{key, task_id, state}], updates}.
//
//   node tests/interop/workflow.js TARGET HEADER_NAME CALLBACK_NAME HEADER_ARGS_JSON [QUEUE]
//
// e.g. HEADER_ARGS_JSON '[[1, 2], [3, 4]]' makes headers h0 = HEADER_NAME(1, 2) and h1 = HEADER_NAME(3, 4).
// Progress goes to stderr, one line per WatchWorkflow message.
// Exit status: 0 when the workflow SUCCEEDED, 1 otherwise (including RPC errors), 2 for bad usage.
'use strict';

const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTO_ROOT = path.resolve(__dirname, '..', '..', 'proto');
const LOADER_OPTIONS = {
  keepCase: true, longs: String, enums: String, defaults: true, oneofs: true, includeDirs: [PROTO_ROOT],
};
const TERMINAL = new Set(['WORKFLOW_STATE_SUCCEEDED', 'WORKFLOW_STATE_FAILED', 'WORKFLOW_STATE_CANCELLED']);
const WATCH_SECONDS = 60;
const JSON_TYPE = 'application/json';
const CALLBACK = 'callback';

function loadService() {
  const def = protoLoader.loadSync('conveyor/v1/workflow_service.proto', LOADER_OPTIONS);
  return grpc.loadPackageDefinition(def).conveyor.v1.WorkflowService;
}

function payload(args) {
  // The payload rule: JSON {"args": [...], "kwargs": {...}}; the scheduler inserts the parents'
  // results as args[0] of a node that receives them.
  return Buffer.from(JSON.stringify({ args, kwargs: {} }), 'utf8');
}

// The chord: headers h0, h1, ... and one callback after them all, given their results as a list.
function chordSpec(headerName, callbackName, headerArgs, queue) {
  const task = (name, args) => ({ name, queue, payload: payload(args), content_type: JSON_TYPE });
  const headers = headerArgs.map((args, i) => ({ key: `h${i}`, task: task(headerName, args) }));
  const callback = {
    key: CALLBACK,
    task: task(callbackName, []),
    parents: headers.map((h) => h.key),
    parent_results: 'PARENT_RESULTS_LIST',
  };
  return {
    nodes: [...headers, callback],
    on_failure: 'FAILURE_POLICY_UNSPECIFIED', // fail fast
    name: `node chord: ${headers.length} x ${headerName} -> ${callbackName}`,
  };
}

function submit(client, spec) {
  return new Promise((resolve, reject) => {
    const deadline = new Date(Date.now() + 30 * 1000);
    client.SubmitWorkflow({ workflow: spec }, { deadline }, (err, resp) => (err ? reject(err) : resolve(resp.workflow)));
  });
}

// Resolves with the terminal Workflow and the number of messages the stream sent.
function watch(client, workflowId) {
  return new Promise((resolve, reject) => {
    const deadline = new Date(Date.now() + WATCH_SECONDS * 1000);
    const call = client.WatchWorkflow({ workflow_id: workflowId }, { deadline });
    let last = null;
    let updates = 0;
    call.on('data', (resp) => {
      last = resp.workflow;
      updates += 1;
      process.stderr.write(`${last.state}: ${last.finished_nodes}/${last.nodes.length} nodes finished\n`);
    });
    call.on('error', reject);
    call.on('end', () => {
      if (last && TERMINAL.has(last.state)) resolve({ workflow: last, updates });
      else reject(new Error(`the stream ended with the workflow ${last ? last.state : 'unseen'}`));
    });
  });
}

function decodeResult(result) {
  if (!result || !result.data || result.data.length === 0) return null;
  const ctype = result.content_type || JSON_TYPE;
  if (ctype !== JSON_TYPE) return result.data.toString('base64');
  return JSON.parse(result.data.toString('utf8'));
}

function decodeError(error) {
  if (!error || !error.node) return null;
  return {
    node: error.node, task_id: error.task_id, state: error.state,
    type: error.error ? error.error.type : '', message: error.error ? error.error.message : '',
  };
}

function finish(line, code) {
  // Exit only after stdout is flushed (it may be a pipe).
  process.stdout.write(JSON.stringify(line) + '\n', () => process.exit(code));
}

async function main(argv) {
  if (argv.length < 4 || argv.length > 5) {
    process.stderr.write('usage: node workflow.js TARGET HEADER_NAME CALLBACK_NAME HEADER_ARGS_JSON [QUEUE]\n');
    process.exit(2);
  }
  const [target, headerName, callbackName, headerArgsJson, queue = ''] = argv;
  let headerArgs;
  try {
    headerArgs = JSON.parse(headerArgsJson);
  } catch (e) {
    process.stderr.write(`HEADER_ARGS_JSON is not JSON: ${e.message}\n`);
    process.exit(2);
  }
  if (!Array.isArray(headerArgs) || !headerArgs.length || !headerArgs.every(Array.isArray)) {
    process.stderr.write('HEADER_ARGS_JSON must be a non-empty JSON array of arrays (each header\'s args)\n');
    process.exit(2);
  }

  const WorkflowService = loadService();
  const client = new WorkflowService(target, grpc.credentials.createInsecure());
  let id = null;
  try {
    const submitted = await submit(client, chordSpec(headerName, callbackName, headerArgs, queue));
    id = submitted.id;
    process.stderr.write(`submitted ${id}: ${submitted.nodes.length} nodes\n`);
    const { workflow, updates } = await watch(client, id);
    client.close();
    const ok = workflow.state === 'WORKFLOW_STATE_SUCCEEDED';
    finish({
      id,
      state: workflow.state,
      result: ok ? decodeResult(workflow.result) : null,
      error: decodeError(workflow.error),
      nodes: workflow.nodes.map((n) => ({ key: n.key, task_id: n.task_id, state: n.state })),
      updates,
    }, ok ? 0 : 1);
  } catch (err) {
    client.close();
    const code = err.code !== undefined ? grpc.status[err.code] || String(err.code) : undefined;
    finish({
      id, state: null, result: null, error: { type: 'RpcError', code, message: err.details || err.message },
      nodes: [], updates: 0,
    }, 1);
  }
}

main(process.argv.slice(2));
