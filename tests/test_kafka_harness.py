"""The Kafka harness itself: leaders, restarts, the parent-death safeguard, SASL and ACLs,
and the quieting of aiokafka's logs.

On the session's 3-node ``kafka_cluster`` and ``kafka_sasl_broker`` (each left running,
every node up, at the end of each test), and one single node started in a child process.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tools.kafka_harness import (
    REPO_ROOT,
    KafkaCluster,
    KafkaProtocolError,
    NoLeaderError,
    _pid_alive,
    probe_brokers,
    quiet_repeats,
)
from tools.kafka_harness._protocol import Connection

pytestmark = pytest.mark.timeout(120)


def unique(prefix: str) -> str:
    return f"harness-{prefix}-{uuid.uuid4().hex[:8]}"


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout:g} s: {what}"
        time.sleep(0.05)


def create_topic(cluster: KafkaCluster, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers, "log_level": 2})
    admin.create_topics([NewTopic(topic, partitions, 3)])[topic].result(30)
    for partition in range(partitions):
        cluster.leader(topic, partition, timeout=30)


def produce(cluster: KafkaCluster, topic: str, count: int) -> None:
    producer = Producer(
        {"bootstrap.servers": cluster.bootstrap_servers, "acks": "all", "log_level": 2}
    )
    errors: list[object] = []
    for i in range(count):
        producer.produce(
            topic, str(i).encode(), partition=0, on_delivery=lambda err, _msg: errors.append(err)
        )
    assert producer.flush(30) == 0
    assert errors == [None] * count


def high_watermark(cluster: KafkaCluster, topic: str) -> int:
    consumer = Consumer(
        {"bootstrap.servers": cluster.bootstrap_servers, "group.id": "x", "log_level": 2}
    )
    try:
        _low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)
        return int(high)
    finally:
        consumer.close()


# --------------------------------------------------------------------------- leaders


def test_leader_is_the_node_the_cluster_metadata_names(kafka_cluster: KafkaCluster) -> None:
    topic = unique("leader")
    create_topic(kafka_cluster, topic, partitions=3)
    admin = AdminClient({"bootstrap.servers": kafka_cluster.bootstrap_servers})
    seen = admin.list_topics(topic, timeout=10).topics[topic].partitions
    leaders = {p: kafka_cluster.leader(topic, p).node_id for p in range(3)}
    assert leaders == {p: seen[p].leader for p in range(3)}
    assert set(leaders.values()) == {1, 2, 3}  # the controller spreads the leaderships

    started = time.monotonic()
    with pytest.raises(NoLeaderError, match=r"harness-nope-\w+\[0\].*UNKNOWN_TOPIC"):
        kafka_cluster.leader(unique("nope"), 0, timeout=1.0)
    with pytest.raises(NoLeaderError, match=r"partitions \[0, 1, 2\]"):
        kafka_cluster.leader(topic, 3, timeout=0.5)
    assert time.monotonic() - started < 5


def test_start_on_a_partly_running_cluster_starts_only_the_stopped_node_with_its_data(
    kafka_cluster: KafkaCluster,
) -> None:
    topic = unique("resume")
    create_topic(kafka_cluster, topic, partitions=1)
    produce(kafka_cluster, topic, 20)
    victim = kafka_cluster.leader(topic, 0)
    others = {node.node_id: node.pid for node in kafka_cluster.nodes if node is not victim}
    port, cluster_id = victim.port, kafka_cluster.cluster_id

    victim.kill()
    successor = kafka_cluster.leader(topic, 0, timeout=30, running=True)
    assert successor is not victim
    kafka_cluster.start()

    assert victim.is_running and victim.port == port
    assert kafka_cluster.cluster_id == cluster_id
    assert {n.node_id: n.pid for n in kafka_cluster.nodes if n is not victim} == others
    assert (victim.data_dir / f"{topic}-0").is_dir()  # its log directory was kept
    wait_until(
        lambda: victim.node_id in kafka_cluster.metadata([topic]).topics[topic].partitions[0].isr,
        30,
        f"node {victim.node_id} back in the ISR of {topic}[0]",
    )
    assert high_watermark(kafka_cluster, topic) == 20


# --------------------------------------------------------------------------- parent death

_CHILD = r"""
import sys, threading, time
from pathlib import Path

sys.path.insert(0, sys.argv[2])
from tools.kafka_harness import KafkaCluster


def in_a_thread_that_ends(action):
    native = []

    def run():
        native.append(threading.get_native_id())
        action()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    task = Path(f"/proc/self/task/{native[0]}")
    while task.exists():  # the kernel is done with the thread (and its PDEATHSIG)
        time.sleep(0.01)


cluster = KafkaCluster(1, directory=Path(sys.argv[1]))
in_a_thread_that_ends(cluster.start)
node = cluster.nodes[0]
in_a_thread_that_ends(node.restart)
print(node.pid, node.bootstrap, flush=True)
sys.stdin.read()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_broker_restarted_from_a_thread_that_ended_dies_with_its_python_process(
    kafka_jars: Path, tmp_path: Path
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(tmp_path), str(REPO_ROOT)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    pid = 0
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line, f"the child exited with {child.wait()} before starting its broker"
        pid_text, bootstrap = line.split()
        pid = int(pid_text)
        # Both threads that started it have ended, and the broker still serves.
        assert probe_brokers(bootstrap, timeout=10) == {1: bootstrap}

        child.kill()  # no atexit hook runs: only the kernel's safeguard is left
        child.wait()
        wait_until(lambda: not _pid_alive(pid), 20, f"broker pid {pid} killed with its parent")
    finally:
        child.kill()
        child.wait()
        if pid and _pid_alive(pid):
            os.killpg(pid, signal.SIGKILL)


# --------------------------------------------------------------------------- SASL and ACLs


def test_a_sasl_broker_wants_the_right_password(kafka_sasl_broker: KafkaCluster) -> None:
    address = kafka_sasl_broker.bootstrap_servers
    password = kafka_sasl_broker.sasl_users["alice"]
    with pytest.raises(KafkaProtocolError) as refused:
        probe_brokers(address, sasl=("alice", password + "x"))
    assert refused.value.code == 58, refused.value  # SASL_AUTHENTICATION_FAILED
    assert password not in str(refused.value)
    with pytest.raises((OSError, ValueError)):
        probe_brokers(address)  # no SASL handshake: the broker hangs up
    assert probe_brokers(address, sasl=("alice", password)) == {1: address}


def test_grant_puts_acls_in_force_and_nothing_else(kafka_sasl_broker: KafkaCluster) -> None:
    address = kafka_sasl_broker.bootstrap_servers
    alice = ("alice", kafka_sasl_broker.sasl_users["alice"])
    prefix = unique("acl")
    mine, other = f"{prefix}-mine", unique("other")

    def alice_sees(topic: str) -> int:
        with Connection(address, 5.0, alice) as connection:
            return connection.metadata([topic]).topics[topic].error_code

    assert alice_sees(mine) == 29  # TOPIC_AUTHORIZATION_FAILED: she may not even ask
    acls = kafka_sasl_broker.grant("alice", ["describe"], topic=prefix, prefixed=True)
    assert alice_sees(mine) == 3  # UNKNOWN_TOPIC_OR_PARTITION: she may ask; it is not there
    assert alice_sees(other) == 29
    with kafka_sasl_broker.nodes[0].connect() as connection:
        assert set(acls) <= connection.describe_acls()


def test_restart_keeps_each_node_s_port_data_and_acls(kafka_sasl_broker: KafkaCluster) -> None:
    address = kafka_sasl_broker.bootstrap_servers
    alice = ("alice", kafka_sasl_broker.sasl_users["alice"])
    topic = unique("kept")
    kafka_sasl_broker.grant("alice", ["describe"], topic=topic)
    admin_user, admin_password = kafka_sasl_broker.admin or ("", "")
    admin = AdminClient(
        {
            "bootstrap.servers": address,
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanisms": "PLAIN",
            "sasl.username": admin_user,
            "sasl.password": admin_password,
        }
    )
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(30)
    kafka_sasl_broker.leader(topic, 1)
    node = kafka_sasl_broker.nodes[0]
    port, pid = node.port, node.pid

    kafka_sasl_broker.restart()

    assert node.is_running and node.port == port and node.pid != pid
    with Connection(address, 5.0, alice) as connection:
        described = connection.metadata([topic]).topics[topic]
    assert (described.error_code, sorted(described.partitions)) == (0, [0, 1])


def test_acls_on_a_cluster_without_an_authorizer_are_refused(kafka_cluster: KafkaCluster) -> None:
    with pytest.raises(KafkaProtocolError, match="SECURITY_DISABLED"):
        kafka_cluster.grant("alice", ["read"], topic="anything")


# --------------------------------------------------------------------------- aiokafka logs


def test_aiokafka_repeats_are_logged_once_and_bus_logs_every_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    chatty = logging.getLogger("aiokafka.conn")
    for _ in range(500):
        chatty.error("Unable connect to node with id %s: %s", 1, "Connect call failed")
    chatty.error("Unable connect to node with id %s: %s", 2, "Connect call failed")
    chatty.info("Closing connection")  # below WARNING
    ours = logging.getLogger("bus.aiokafka")
    for _ in range(3):
        ours.warning("the cluster does not answer (retrying)")

    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        ("aiokafka.conn", "Unable connect to node with id 1: Connect call failed"),
        ("aiokafka.conn", "Unable connect to node with id 2: Connect call failed"),
        *[("bus.aiokafka", "the cluster does not answer (retrying)")] * 3,
    ]
    assert quiet_repeats("aiokafka").dropped == 499


def test_a_child_process_prints_each_aiokafka_message_once_on_stderr() -> None:
    script = (
        "import logging\n"
        "from tools.kafka_harness import quiet_repeats\n"
        "quiet_repeats()\n"
        "for _ in range(1000):\n"
        "    logging.getLogger('aiokafka.cluster').error('Unable to update metadata from [1]')\n"
        "logging.getLogger('bus').error('ours')\n"
        "logging.getLogger('bus').error('ours')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stderr.splitlines() == ["Unable to update metadata from [1]", "ours", "ours"]
