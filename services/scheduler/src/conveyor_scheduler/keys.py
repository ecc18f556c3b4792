"""Every Redis key name Conveyor uses, built in one place, and the legend of the Redis model.

All state of one queue shares the hash tag ``{q:NAME}`` so each queue lives in one
Redis Cluster slot; the queue registry shares the tag ``{cv}``, the beat ``{beat}``, the
worker registry ``{workers}``.

KEY_PATTERNS, TASK_FIELDS, SCHEDULE_FIELDS and WORKER_FIELDS below are the one source for what each key,
channel and hash field is. tests/unit/test_key_legend.py holds the Lua scripts, the Python
code and docs/ARCHITECTURE.md to them: a key or field used anywhere must be listed here and
in that page's tables, and everything listed here must be used.
"""

from __future__ import annotations

from dataclasses import dataclass

PRIORITY_LEVELS = 10
STAT_BUCKET_MS = 10_000
"""The span of one activity bucket cv:{q:QUEUE}:m:BUCKET (lib.lua's STAT_BUCKET_MS)."""
STAT_RETENTION_MS = 3_670_000
"""How long a bucket lives after it is made (lib.lua's PEXPIRE): the hour GetQueueHistory
reads, plus the bucket itself. A busy queue's hour costs 360 buckets of at most 1,056 bytes
of counters each (a string ends at its highest histogram bucket): in Redis, 0.8-1.4 KB each by
MEMORY USAGE under a mixed load (0-200 ms tasks), so about 0.5 MB per continuously busy queue,
four times the 15 minutes kept before; an idle minute costs nothing."""
CHANNEL_PREFIX = "cv"
"""The prefix of the classic channels below. On a Redis Cluster a queue's own events (QUEUE_EVENTS)
go to shard channels "cv:{q:QUEUE}:EVENT" instead (QueueKeys.shard_channels), with the same payloads."""
QUEUE_EVENTS = ("done", "state", "cancel", "wake", "wfo")
DONE_CHANNEL = "cv:done"
"""Payload: the id of a task that finished (published by the Lua scripts)."""
STATE_CHANNEL = "cv:state"
"""Payload: "id|state|attempt|seq" for every state change of a watched task (seq: its field ev)."""
CANCEL_CHANNEL = "cv:cancel"
"""Payload: "id|worker id" when a running task is asked to stop."""
WAKE_CHANNEL = "cv:wake"
"""Payload: "queue|0|replica" (tasks are ready) or "queue|due-ms|replica" (a task is due then),
published by `replica` (the publisher ignores its own); plain "queue" and "queue|due-ms" are read too."""
CONTROL_CHANNEL = "cv:control"
"""Payload: "worker id|owner|action|arg": a worker control request (control.py) for the
stream `owner` (WorkerSession.owner); action drain, shutdown (arg: reason) or concurrency (arg: slots)."""
WORKERS_PREFIX = "cv:{workers}:"
"""The worker registry shares the tag {workers}: worker hashes WORKERS_PREFIX + "w:" + id and the index."""
WORKERS_INDEX = WORKERS_PREFIX + "seen"
"""Sorted set: worker id -> ms its registry entry lapses (pruned on read)."""
REGISTRY_KEYS = ("cv:{cv}:queues", "cv:{cv}:queue-names", "cv:{cv}:queue-seq")
BEAT_CHANNEL = "cv:beat"
"""Payload: a schedule id whose definition changed, or "released" when the beat leader steps down."""
BEAT_PREFIX = "cv:{beat}:"
"""All beat state shares the tag {beat}: schedule hashes BEAT_PREFIX + "s:" + id and the keys below."""
BEAT_DUE = BEAT_PREFIX + "due"
"""Sorted set: schedule id -> next fire ms (active schedules only)."""
BEAT_INDEX = BEAT_PREFIX + "ids"
"""Sorted set of every schedule id, all scored 0 (listed in id order with ZRANGEBYLEX)."""
BEAT_LEADER = BEAT_PREFIX + "leader"
"""String: the beat leader's lease token "SCHEDULER_ID/RANDOM", with the lease as its TTL."""


WORKFLOW_OUTBOX_CHANNEL = "cv:wfo"
"""Payload: the key prefix "cv:{q:QUEUE}:" of a queue whose workflow outbox got an entry."""
WORKFLOW_CHANNEL = "cv:wfs"
"""Payload: the id of a workflow that changed (a node finished or was submitted, or its state)."""
WORKFLOW_RECOVERY = "cv:{cv}:wfr"
"""Sorted set: workflow id -> ms after which its released nodes are looked at again (a replica
that died between releasing nodes and submitting them leaves them there)."""
WORKFLOW_QUEUES = "cv:{cv}:wfq"
"""Set of the queues whose tasks include workflow nodes (their outboxes are swept)."""
OUTBOX_GROUP = "advance"
"""The consumer group of every queue's workflow outbox (one consumer per replica)."""


def schedule_key(schedule_id: str) -> str:
    return f"{BEAT_PREFIX}s:{schedule_id}"


def worker_key(worker_id: str) -> str:
    return f"{WORKERS_PREFIX}w:{worker_id}"


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """Key names of one queue, in the KEYS order every queue script expects (lib.lua)."""

    queue: str
    prefix: str
    script_keys: tuple[str, ...]

    @classmethod
    def of(cls, queue: str) -> QueueKeys:
        prefix = f"cv:{{q:{queue}}}:"
        ready = tuple(f"{prefix}r:{p}" for p in range(PRIORITY_LEVELS))
        return cls(queue, prefix, (*ready, f"{prefix}s", f"{prefix}a", f"{prefix}d", f"{prefix}pn"))

    def task(self, task_id: str) -> str:
        return f"{self.prefix}t:{task_id}"

    def shard_channel(self, event: str) -> str:
        """On a Redis Cluster, this queue's own channel of one of QUEUE_EVENTS: a shard channel in
        the queue's slot (lib.lua's ARGV[4] is the prefix up to the event)."""
        return f"{self.prefix}{event}"

    @property
    def ready(self) -> tuple[str, ...]:
        return self.script_keys[:PRIORITY_LEVELS]

    @property
    def scheduled(self) -> str:
        return self.script_keys[PRIORITY_LEVELS]

    @property
    def active(self) -> str:
        return self.script_keys[PRIORITY_LEVELS + 1]

    @property
    def dead(self) -> str:
        return self.script_keys[PRIORITY_LEVELS + 2]

    @property
    def parked_names(self) -> str:
        """Set of the task names that have parked tasks (name-aware dispatch, lib.lua)."""
        return self.script_keys[PRIORITY_LEVELS + 3]

    def parked(self, task_name: str) -> str:
        """Zset of the parked tasks of one name, scored 9 - priority."""
        return f"{self.prefix}p:{task_name}"

    @property
    def paused(self) -> str:
        """Set while the queue is paused (PauseQueue): claim.lua leases nothing."""
        return f"{self.prefix}pz"

    def stats(self, bucket: int) -> str:
        """The activity counts of the 10 seconds starting at bucket * STAT_BUCKET_MS."""
        return f"{self.prefix}m:{bucket}"

    @property
    def outbox(self) -> str:
        """Stream of the queue's workflow nodes that finished (lib.lua's finish), read by workflows.py."""
        return f"{self.prefix}wo"


@dataclass(frozen=True, slots=True)
class WorkflowKeys:
    """Key names of one workflow, in the KEYS order every workflow script expects (wf_lib.lua)."""

    workflow_id: str
    script_keys: tuple[str, ...]

    @classmethod
    def of(cls, workflow_id: str) -> WorkflowKeys:
        prefix = f"cv:{{w:{workflow_id}}}:"
        return cls(workflow_id, tuple(prefix + k for k in ("w", "g", "s", "ns", "nt", "nr", "pw", "ru", "o", "lv")))

    @property
    def meta(self) -> str:
        return self.script_keys[0]

# -- the legend ----------------------------------------------------------------------------
# Placeholders are upper case: QUEUE (a queue name), P (a priority 0-9), ID (a task or
# schedule id), KEY (an idempotency key), NAME (a task name). Times are Unix ms.

KEY_PATTERNS: dict[str, tuple[str, str]] = {
    # One queue: every key under its hash tag, so each script touches one cluster slot.
    "cv:{q:QUEUE}:r:P": ("list", "ready task ids of priority P, FIFO (RPUSH in, LPOP out; a returned lease "
                                 "goes back to the front with LPUSH)"),
    "cv:{q:QUEUE}:s": ("zset", "scheduled: task id -> due ms (eta, retry backoff, rate-limit wait)"),
    "cv:{q:QUEUE}:a": ("zset", "active: task id -> lease expiry ms (the reaper's index)"),
    "cv:{q:QUEUE}:d": ("zset", "dead letters: task id -> ms it ended DEAD"),
    "cv:{q:QUEUE}:t:ID": ("hash", "one task (fields: TASK_FIELDS); expires a result TTL after it finished"),
    "cv:{q:QUEUE}:k:KEY": ("string", "idempotency key -> task id, for the dedup window"),
    "cv:{q:QUEUE}:rl:NAME": ("string", "GCRA state (next free slot ms) of task NAME's rate limit"),
    "cv:{q:QUEUE}:rlq": ("string", "GCRA state (next free slot ms) of the queue's rate limit"),
    "cv:{q:QUEUE}:pn": ("set", "names of tasks parked in this queue (name-aware dispatch)"),
    "cv:{q:QUEUE}:p:NAME": ("zset", "parked QUEUED task ids of task NAME -> 9 - priority (members of one "
                                    "priority in id order); read before each priority's ready list"),
    "cv:{q:QUEUE}:pz": ("string", "\"1\" while the queue is paused (PauseQueue): claims lease nothing"),
    "cv:{q:QUEUE}:x": ("stream", "the task index: one entry {i: \"id,id,...\"} per submit call, its tasks in request "
                                 "order; an entry is deleted by the reaper once none of its records lives "
                                 "(ListTasks walks it newest first, skipping tasks whose record is gone)"),
    "cv:{q:QUEUE}:xk": ("string", "where the reaper's pass over the task index is: \"start ms|last entry id\", "
                                 "then \"start ms||end ms\" once it is over (reap.lua: trim_index)"),
    "cv:{q:QUEUE}:tb": ("hash", "priority -> tombstones in that ready list (entries of tasks cancelled while "
                                "QUEUED, not yet dropped by a claim)"),
    "cv:{q:QUEUE}:m:BUCKET": ("string", "activity of the 10 s from BUCKET * 10,000 ms: u32 counters (STAT_COUNTERS, "
                                        "then the wait and run histograms); expires 61 minutes after it starts"),
    # The queue registry: a stable number per queue, embedded in its task ids.
    "cv:{cv}:queues": ("hash", "queue name -> queue number"),
    "cv:{cv}:queue-names": ("hash", "queue number -> queue name"),
    "cv:{cv}:queue-seq": ("string", "the last queue number given out"),
    # The beat.
    "cv:{beat}:s:ID": ("hash", "one schedule (fields: SCHEDULE_FIELDS)"),
    "cv:{beat}:due": ("zset", "schedule id -> next fire ms, active schedules only"),
    "cv:{beat}:ids": ("zset", "every schedule id, all scored 0 (listed in id order)"),
    "cv:{beat}:leader": ("string", "the beat leader's lease token SCHEDULER_ID/RANDOM, the lease as its TTL"),
    # The worker registry, kept by the replica holding each worker's stream.
    "cv:{workers}:w:ID": ("hash", "one connected worker, ID its worker id (fields: WORKER_FIELDS); expires a "
                                  "lease TTL after its last heartbeat"),
    "cv:{workers}:seen": ("zset", "worker id -> ms its entry lapses (the list's index; lapsed ids pruned on read)"),
    "cv:{q:QUEUE}:wo": ("stream", "workflow outbox: one entry per finished workflow node {t id, w workflow, n node, "
                                  "u run, s state, r rc et em: its result or error}, read by the consumer group "
                                  "\"advance\" and deleted once applied to its workflow"),
    # One workflow: every key under its hash tag {w:ID} (wf_lib.lua).
    "cv:{w:ID}:w": ("hash", "one workflow (fields: WORKFLOW_FIELDS)"),
    "cv:{w:ID}:g": ("hash", "node key -> graph JSON {p parents, c children, m ParentResults, q queue, n name}"),
    "cv:{w:ID}:s": ("hash", "node key -> its TaskSpec, serialized"),
    "cv:{w:ID}:ns": ("hash", "node key -> 0 waiting, 2 submitted, or its task's terminal state"),
    "cv:{w:ID}:nt": ("hash", "node key -> its task id, once submitted"),
    "cv:{w:ID}:nr": ("hash", "node key -> its outcome: \"r\" + JSON result, \"b\" + other result, \"e\" + error JSON"),
    "cv:{w:ID}:pw": ("hash", "node key -> parents not finished yet"),
    "cv:{w:ID}:ru": ("set", "nodes released (parents done) and not yet marked submitted"),
    "cv:{w:ID}:o": ("list", "node keys in request order"),
    "cv:{w:ID}:lv": ("set", "leaf nodes (no node names them as a parent)"),
    "cv:{cv}:wfr": ("zset", "workflow id -> ms after which its released nodes are looked at again"),
    "cv:{cv}:wfq": ("set", "queues whose tasks include workflow nodes (their outboxes are swept)"),
    # Pub/sub channels (not keys; every replica subscribes).
    "cv:{q:QUEUE}:EVENT": ("channel", "on a Redis Cluster, a shard channel of the queue's own events (EVENT: "
                                      "done, state, cancel, wake or wfo) with the payloads of cv:EVENT below"),
    "cv:done": ("channel", "the id of every task that finished"),
    "cv:state": ("channel", "id|state|attempt|seq for each state change of a watched task"),
    "cv:cancel": ("channel", "id|worker id when a running task is asked to stop"),
    "cv:wake": ("channel", "queue|0|replica (tasks are ready) or queue|due ms|replica (one is due then)"),
    "cv:wfo": ("channel", "the prefix cv:{q:QUEUE}: of a queue whose workflow outbox got an entry"),
    "cv:wfs": ("channel", "the id of a workflow that changed"),
    "cv:beat": ("channel", "a schedule id whose definition changed, or released when the leader steps down"),
    "cv:control": ("channel", "worker id|owner|action|arg: drain, shutdown (arg: reason) or concurrency (arg: "
                              "slots) for the worker's stream owner, relayed by its replica"),
}
"""Key (or channel) pattern -> (Redis type, meaning)."""

TASK_FIELDS: dict[str, str] = {
    # Written at submit (validation.check_spec builds them), never changed after.
    "n": "task name",
    "d": "payload bytes",
    "ct": "payload content type (absent: application/json)",
    "h": "headers as a JSON object (trace context lives here)",
    "p": "priority 0-9 (absent: 0)",
    "to": "timeout ms: the hard time limit of one attempt",
    "st2": "soft timeout ms",
    "x": "expires_at ms: not started by then, it ends EXPIRED",
    "mr": "max retries",
    "ib": "initial retry backoff ms",
    "mb": "max retry backoff ms",
    "mu": "retry backoff multiplier",
    "nj": "1: no jitter on the retry backoff",
    "k": "idempotency key",
    "rl": "rate limit, count/period-ms",
    # The life cycle.
    "st": "state: 1 SCHEDULED, 2 QUEUED, 3 ACTIVE, 4 SUCCEEDED, 5 FAILED, 6 CANCELLED, 7 EXPIRED, 8 DEAD",
    "eta": "due ms (delayed submit, retry backoff, rate-limit wait)",
    "rs": "1 while it holds a reserved rate-limit slot",
    "at": "attempt number (absent or 0 before the first lease)",
    "sa": "started ms of the current attempt",
    "dl": "deadline ms of the current attempt (started + timeout)",
    "le": "lease expiry ms",
    "lt": "lease token (fencing): only an ack carrying it counts; absent or empty when not leased",
    "w": "worker id of the current lease (kept once the task finished)",
    "cx": "1 when a cancel was requested while it ran",
    "fa": "finished ms",
    "r": "result bytes",
    "rc": "result content type (absent: application/json)",
    "et": "last error type",
    "em": "last error message",
    "eb": "last error traceback",
    "wt": "1 once watched (WatchTask): its state changes are published",
    "ev": "count of state changes published for watchers (orders them)",
    "o": "the stream (WorkerSession.owner) that owns the current lease; absent for a polled lease, empty once "
         "finished",
    "pk": "1 while the task is parked: the workers that claimed it do not declare its name",
    "tb": "1 while a tombstone of it sits in its ready list (cancelled while QUEUED)",
    "ah": "the attempts that failed or came back unfinished, a JSON array oldest first (the last 16): "
          "{a attempt, w worker, s started ms, e ended ms, t m b: error type, message, traceback}",
    "wf": "for a workflow's node: the workflow id",
    "wn": "for a workflow's node: the node key",
    "wr": "for a workflow's node: the run of the workflow it was submitted for",
}
"""Task hash (cv:{q:QUEUE}:t:ID) field -> meaning."""

CLAIM_REPLY_FIELDS: dict[str, str] = {
    "id": "the task id, appended by claim.lua to each leased task's record; never stored",
}
"""Names that appear in a task record as the scripts return it, but not in the hash."""

STAT_COUNTERS: tuple[str, ...] = ("submitted", "started", "succeeded", "failed", "expired", "cancelled", "dead",
                                   "retried")
"""Slots 0-7 of an activity bucket: new tasks stored (duplicates excluded), attempts leased, tasks
that ended SUCCEEDED, FAILED, EXPIRED, CANCELLED and DEAD, failed attempts scheduled again."""
WAIT_SLOT = 8
"""Slots WAIT_SLOT + K: attempts whose queue wait fell in log-scale bucket K (K >= 1:
[2^((K-1)/4), 2^(K/4)) ms; 0: under 1 ms; the last bucket holds everything longer)."""
RUN_SLOT = WAIT_SLOT + 128
"""Slots RUN_SLOT + K: attempts whose run time (lease to ack) fell in bucket K."""
HIST_BUCKETS = 128
"""An activity bucket (cv:{q:QUEUE}:m:BUCKET) is a string of unsigned 32-bit big-endian
counters, slot by slot (BITFIELD u32 #slot): the constants above, the same in lib.lua."""

SCHEDULE_FIELDS: dict[str, str] = {
    "def": "the definition: a serialized conveyor.v1.Schedule",
    "v": "version, raised by every save (optimistic concurrency)",
    "pz": "1 while paused",
    "a": "interval anchor ms",
    "ca": "created ms",
    "ua": "updated ms",
    "nx": "next fire ms (absent: paused or ended)",
    "lf": "last fire ms",
    "lt": "id of the task of the last firing",
    "fc": "firings submitted",
    "ms": "fire times missed",
    "le": "last error (a firing the submit path refused)",
}
"""Schedule hash (cv:{beat}:s:ID) field -> meaning."""

WORKER_FIELDS: dict[str, str] = {
    "h": "hostname",
    "pid": "process id",
    "sdk": "SDK name/version",
    "q": "queues, comma-separated",
    "n": "declared task names, comma-separated (empty: any)",
    "c": "slots (concurrency), as of the hello or the last heartbeat",
    "pf": "prefetch",
    "sa": "ms the worker process started (absent: not told)",
    "r": "scheduler id of the replica holding its stream",
    "o": "the stream (WorkerSession.owner) that registered it: only that stream refreshes or removes it",
    "ca": "ms the stream was accepted",
    "hb": "ms of the last heartbeat",
    "ex": "ms the entry lapses (its hash TTL; the score in cv:{workers}:seen)",
    "dr": "1 while it takes no new work (drained or shutting down)",
    "ok": "attempts succeeded since the worker started",
    "ko": "attempts failed since the worker started",
    "at": "ids of the tasks it runs, comma-separated, as of the last heartbeat",
}
"""Worker hash (cv:{workers}:w:ID) field -> meaning."""

WORKFLOW_FIELDS: dict[str, str] = {
    "st": "state: 1 RUNNING, 2 SUCCEEDED, 3 FAILED, 4 CANCELLED (WorkflowState)",
    "nm": "name",
    "pol": "FailurePolicy: 0 fail fast, 1 continue",
    "tp": "the trace context every node's task carries, a JSON object of headers",
    "run": "run number: 1, plus one per RetryWorkflow",
    "ca": "created ms",
    "fa": "finished ms (while terminal)",
    "nn": "node count",
    "nf": "nodes finished (any terminal state, a node that will never run included)",
    "en": "the failed node's key (FAILED)",
    "ei": "the failed node's task id",
    "es": "the failed node's task state",
    "ee": "the failed node's error, JSON {type, message, state}",
}
"""Workflow hash (cv:{w:ID}:w) field -> meaning."""
