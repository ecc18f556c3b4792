#!/bin/sh
# Creates the Redis Cluster of compose.yaml's `cluster` profile once: 3 primaries and 3 replicas
# from REDIS_CLUSTER_NODES ("ip:port ...", six of them; CLUSTER MEET takes IP addresses only), then
# waits until every node says cluster_state:ok. Does nothing but wait when the first node already
# knows other nodes: the cluster exists (e.g. after `docker compose restart` or `up` again).
set -eu
nodes=${REDIS_CLUSTER_NODES:?six ip:port addresses}
tries=${REDIS_CLUSTER_WAIT:-120}

info() {  # CLUSTER INFO of one ip:port, without the \r
  redis-cli -h "${1%:*}" -p "${1##*:}" cluster info 2>/dev/null | tr -d '\r'
}

wait_all() {  # until every node's CLUSTER INFO has line $1
  for node in $nodes; do
    n=0
    until info "$node" | grep -qx "$1"; do
      n=$((n + 1))
      if [ "$n" -ge "$tries" ]; then
        echo "redis-cluster-init: $node never said $1" >&2
        exit 1
      fi
      sleep 1
    done
  done
}

wait_all 'cluster_state:.*'  # every node answers (a new one says cluster_state:fail)
first=${nodes%% *}
if info "$first" | grep -qx 'cluster_known_nodes:1'; then
  # shellcheck disable=SC2086  # one argument per node
  redis-cli --cluster create $nodes --cluster-replicas 1 --cluster-yes
else
  echo "redis-cluster-init: $first knows other nodes, the cluster exists: not creating it again"
fi
wait_all 'cluster_state:ok'
echo "redis-cluster-init: all nodes say cluster_state:ok"
