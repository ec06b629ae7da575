"""Real Apache Kafka (KRaft) brokers for the polybus tests, started by the project itself.

The broker jars come from Maven Central (``pom.xml`` next to this file) and are cached;
each broker is a ``java ... kafka.Kafka server.properties`` process running as a combined
broker+controller node on 127.0.0.1.  No Docker, no Kafka tarball.

Typical use::

    with KafkaCluster(size=3) as cluster:
        client = make_client(cluster.bootstrap_servers)
        cluster.nodes[0].kill()      # SIGKILL
        cluster.nodes[0].restart()   # same ports, data directory and node id

Environment variables:

``BUS_KAFKA_VERSION``
    Kafka version to run (default :data:`DEFAULT_KAFKA_VERSION`).
``BUS_KAFKA_CACHE``
    Cache root for the jars; they go to ``$BUS_KAFKA_CACHE/<version>/libs``
    (default ``<repo>/.cache/kafka/<version>/libs``).
``JAVA_HOME``
    Java to use (``$JAVA_HOME/bin/java``); otherwise ``java`` on ``PATH``. Java 17+.

Only the standard library is used.  Brokers are started in their own session (so a
Ctrl-C in the terminal does not reach them), are killed by the kernel if the Python
process that started them dies (Linux ``PR_SET_PDEATHSIG``), and are stopped by an
``atexit`` hook otherwise.  The detached broker of the CLI (``python -m tools.kafka_harness
up``) is the exception: it outlives its starter and is tracked by a state file.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import fcntl
import hashlib
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from types import TracebackType

__all__ = [
    "DEFAULT_KAFKA_VERSION",
    "HARNESS_DIR",
    "REPO_ROOT",
    "RUN_DIR",
    "KafkaCluster",
    "KafkaHarnessError",
    "KafkaNode",
    "KafkaStartError",
    "KafkaUnavailable",
    "cache_root",
    "ensure_kafka_libs",
    "find_java",
    "kafka_version",
    "libs_dir",
    "missing_prerequisites",
    "probe_brokers",
]

DEFAULT_KAFKA_VERSION = "4.4.0"
HARNESS_DIR = Path(__file__).resolve().parent
REPO_ROOT = HARNESS_DIR.parents[1]
POM_PATH = HARNESS_DIR / "pom.xml"
LOG4J_CONFIG = HARNESS_DIR / "log4j2.xml"
RUN_DIR = REPO_ROOT / ".cache" / "kafka" / "run"
"""State of the detached broker of ``python -m tools.kafka_harness up``."""

_STAMP_NAME = ".polybus-complete"
_ERROR_LINE = re.compile(r"\] (ERROR|FATAL) |^\S*(Exception|Error)\b|^Caused by: ")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LOG_TAIL_LINES = 60
_JVM_FLAGS = (
    # Measured on 2 cores: C1 only + serial GC cut the time-to-ready by ~0.7 s (≈30 %).
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:-UsePerfData",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)


class KafkaHarnessError(RuntimeError):
    """Base class of the harness errors."""


class KafkaUnavailable(KafkaHarnessError):
    """Kafka cannot be run here: Java or Maven missing, or the jars cannot be downloaded."""


class KafkaStartError(KafkaHarnessError):
    """A broker failed to start or to become ready; the message holds its log tail."""


# --------------------------------------------------------------------------- paths, jars


def kafka_version() -> str:
    """The Kafka version to run: ``$BUS_KAFKA_VERSION`` or :data:`DEFAULT_KAFKA_VERSION`."""
    return os.environ.get("BUS_KAFKA_VERSION") or DEFAULT_KAFKA_VERSION


def cache_root() -> Path:
    """``$BUS_KAFKA_CACHE`` if set, else ``<repo>/.cache/kafka``."""
    env = os.environ.get("BUS_KAFKA_CACHE")
    return Path(env).expanduser().resolve() if env else REPO_ROOT / ".cache" / "kafka"


def libs_dir(version: str | None = None) -> Path:
    """Folder holding the jars of ``version``: ``<cache root>/<version>/libs``."""
    return cache_root() / (version or kafka_version()) / "libs"


def _stamp_text(version: str) -> str:
    pom_digest = hashlib.sha256(POM_PATH.read_bytes()).hexdigest()[:16]
    return f"kafka {version}\npom {pom_digest}\n"


def _libs_cached(libs: Path, version: str) -> bool:
    try:
        return (libs / _STAMP_NAME).read_text() == _stamp_text(version)
    except OSError:
        return False


def ensure_kafka_libs(version: str | None = None) -> Path:
    """Return the folder of the broker jars, downloading them with Maven on first use.

    Maven runs only when the stamp file is missing or stale (another Kafka version or a
    changed ``pom.xml``); a cached call costs a file read.  Concurrent callers serialize
    on a lock file, and the jars are copied to a temporary folder that is renamed into
    place, so an interrupted download never looks complete.

    Raises :class:`KafkaUnavailable` if Maven is missing or fails.
    """
    version = version or kafka_version()
    libs = libs_dir(version)
    if _libs_cached(libs, version):
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaUnavailable(
            f"Maven ('mvn') is not on PATH and the Kafka {version} jars are not cached in "
            f"{libs}; install Maven 3.6+ (the jars are downloaded once from Maven Central)"
        )
    libs.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(libs.parent / ".lock"):
        if _libs_cached(libs, version):
            return libs
        tmp = libs.parent / f"libs.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        cmd = [
            mvn, "-B", "-q", "-Dstyle.color=never", "-f", str(POM_PATH),
            "dependency:copy-dependencies",
            f"-Dkafka.version={version}", f"-DoutputDirectory={tmp}",
        ]  # fmt: skip
        try:
            done = subprocess.run(
                cmd,
                check=False,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=900,
            )
        except subprocess.TimeoutExpired as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise KafkaUnavailable(f"Maven took over {exc.timeout:.0f} s: {' '.join(cmd)}") from exc
        if done.returncode != 0 or not (tmp / f"kafka_2.13-{version}.jar").is_file():
            shutil.rmtree(tmp, ignore_errors=True)
            output = _last_lines(_ANSI.sub("", done.stdout + done.stderr), 30)
            raise KafkaUnavailable(
                f"could not download Kafka {version} with Maven (exit {done.returncode}): "
                f"{' '.join(cmd)}\n{output}"
            )
        shutil.rmtree(libs, ignore_errors=True)
        tmp.rename(libs)
        (libs / _STAMP_NAME).write_text(_stamp_text(version))
    return libs


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@cache
def find_java() -> str:
    """Path of a Java 17+ ``java``: ``$JAVA_HOME/bin/java``, else ``java`` on ``PATH``.

    Raises :class:`KafkaUnavailable` if there is none or it is older than 17.
    """
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not os.access(java, os.X_OK):
        where = f"$JAVA_HOME/bin/java ({java})" if home else "'java' on PATH"
        raise KafkaUnavailable(f"no Java found ({where}); Kafka 4.x needs Java 17 or newer")
    try:
        out = subprocess.run(
            [java, "-version"], check=False, capture_output=True, text=True, timeout=30
        ).stderr
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise KafkaUnavailable(f"cannot run {java} -version: {exc}") from exc
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    major = int(match.group(1)) if match else 0
    if major == 1 and match and match.group(2):  # "1.8.0_392"
        major = int(match.group(2))
    if major < 17:
        raise KafkaUnavailable(f"Kafka 4.x needs Java 17 or newer; {java} is: {out.strip()}")
    return java


def missing_prerequisites(version: str | None = None) -> str | None:
    """Why Kafka cannot be started here (missing Java/Maven), or ``None`` if it can.

    Does not download anything.
    """
    try:
        find_java()
    except KafkaUnavailable as exc:
        return str(exc)
    version = version or kafka_version()
    if not _libs_cached(libs_dir(version), version) and shutil.which("mvn") is None:
        return (
            f"Maven ('mvn') is not on PATH and the Kafka {version} jars are not cached in "
            f"{libs_dir(version)}"
        )
    return None


# --------------------------------------------------------------------------- small helpers


def _ephemeral_port_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1 (all held open while picking).

    Picked at random *below* the kernel's ephemeral range when possible, so that a
    client's outgoing connection cannot take the port of a killed broker before it is
    restarted on the same port.
    """
    low, _high = _ephemeral_port_range()
    candidates = list(range(10000, low)) if low > 11000 else []
    random.shuffle(candidates)
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        while len(ports) < count:
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            try:
                sock.bind(("127.0.0.1", candidates.pop() if candidates else 0))
            except OSError:
                continue
            ports.append(sock.getsockname()[1])
        return ports


def new_cluster_id() -> str:
    """A random KRaft cluster id, in the form ``StorageTool random-uuid`` prints.

    (URL-safe base64 of 16 random bytes without padding; Kafka avoids ids starting with
    ``-`` because they read as command-line options.)
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _last_lines(text: str, count: int) -> str:
    return "\n".join(text.splitlines()[-count:])


def log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of the file at ``path`` ('' if it cannot be read)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 256 * 1024))
            return _last_lines(handle.read().decode("utf-8", "replace"), lines)
    except OSError:
        return ""


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by the broker")
        buf += chunk
    return bytes(buf)


def probe_brokers(address: str, timeout: float = 3.0) -> dict[int, str]:
    """Ask the broker at ``"host:port"`` for cluster metadata; return ``{node id: "h:p"}``.

    Sends a raw Kafka Metadata v4 request (no topics) over a socket.  A KRaft broker
    only lists registered, unfenced brokers, so seeing a node id here means that broker
    is serving.  Raises ``OSError`` (or ``ConnectionError``/``ValueError``) on failure.
    """
    host, _, port = address.rpartition(":")
    client_id = b"polybus-kafka-harness"
    correlation_id = 0x5042
    # Request header v1 (api_key=3 Metadata, api_version=4) + body: topics=[] (not null,
    # so no topic is described), allow_auto_topic_creation=false.
    request = struct.pack(">hhih", 3, 4, correlation_id, len(client_id)) + client_id
    request += struct.pack(">ib", 0, 0)
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(request)) + request)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        data = _recv_exact(sock, size)
    # Response header v0 (correlation id), throttle_time_ms, then the brokers array.
    got_id, _throttle, count = struct.unpack_from(">iii", data, 0)
    if got_id != correlation_id:
        raise ValueError(f"unexpected correlation id {got_id} from {address}")
    offset = 12
    brokers: dict[int, str] = {}
    for _ in range(count):
        node_id, host_len = struct.unpack_from(">ih", data, offset)
        offset += 6
        broker_host = data[offset : offset + host_len].decode()
        offset += host_len
        broker_port, rack_len = struct.unpack_from(">ih", data, offset)
        offset += 6 + max(rack_len, 0)
        brokers[node_id] = f"{broker_host}:{broker_port}"
    return brokers


def _pdeathsig_preexec() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGKILL the child when its parent thread dies."""
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        # PDEATHSIG fires when the *thread* that forked exits; only the main thread
        # lives as long as the process.
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"


def _kill_group(pid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to the process group led by ``pid`` (falls back to the process)."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return
    except PermissionError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


# --------------------------------------------------------------------------- nodes


_LIVE_NODES: set[KafkaNode] = set()
_LIVE_CLUSTERS: set[KafkaCluster] = set()


@atexit.register
def _stop_everything_at_exit() -> None:
    for cluster in list(_LIVE_CLUSTERS):
        with contextlib.suppress(Exception):
            cluster.stop(timeout=5)
    _terminate(list(_LIVE_NODES), timeout=5)


def _terminate(nodes: Sequence[KafkaNode], timeout: float) -> None:
    """SIGTERM all ``nodes`` at once, wait up to ``timeout`` s, then SIGKILL the rest."""
    for node in nodes:
        node.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for node in nodes:
        node.stop(timeout=max(0.0, deadline - time.monotonic()))


class KafkaNode:
    """One combined broker+controller Kafka process on 127.0.0.1.

    Normally created by :class:`KafkaCluster`, which picks the ports and the quorum
    settings.  Everything of the node lives in ``directory``: ``server.properties``,
    ``data/`` (the log dir, formatted on first start) and ``kafka.log`` (the broker's
    stdout and stderr, appended to across restarts).
    """

    def __init__(
        self,
        *,
        node_id: int,
        directory: Path,
        port: int,
        controller_port: int,
        cluster_id: str,
        properties: Mapping[str, str],
        format_args: Sequence[str] = (),
        libs: Path | None = None,
        heap: str = "512m",
        detached: bool = False,
    ) -> None:
        """Describe a node; nothing is started.

        ``properties`` is the complete ``server.properties`` content.  ``format_args`` are
        the quorum arguments of ``StorageTool format`` (``["--standalone"]`` or none for
        static voters).  ``detached`` nodes outlive this Python process (CLI mode).
        """
        self.node_id = node_id
        self.directory = Path(directory)
        self.port = port
        self.controller_port = controller_port
        self.cluster_id = cluster_id
        self.properties = dict(properties)
        self.format_args = list(format_args)
        self.libs = libs
        self.heap = heap
        self.detached = detached
        self.process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.is_running else "stopped"
        return f"<KafkaNode {self.node_id} {self.bootstrap} {state}>"

    # -- properties

    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:<port>"`` of this node's PLAINTEXT listener."""
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        """The broker's stdout/stderr log file."""
        return self.directory / "kafka.log"

    @property
    def data_dir(self) -> Path:
        """The node's ``log.dirs`` (partitions and KRaft metadata)."""
        return self.directory / "data"

    @property
    def properties_path(self) -> Path:
        """The generated ``server.properties``."""
        return self.directory / "server.properties"

    @property
    def pid(self) -> int | None:
        """Process id of the running broker, or ``None``."""
        return self.process.pid if self.process is not None else None

    @property
    def is_running(self) -> bool:
        """Whether the broker process was started by this object and has not exited."""
        return self.process is not None and self.process.poll() is None

    # -- lifecycle

    def _java_command(self, main_class: str, *args: str) -> list[str]:
        libs = self.libs or ensure_kafka_libs()
        return [
            find_java(),
            "-Xms64m",
            f"-Xmx{self.heap}",
            *_JVM_FLAGS,
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            "-cp",
            f"{libs}/*",
            main_class,
            *args,
        ]

    def write_properties(self) -> None:
        """(Re)write ``server.properties`` from :attr:`properties`."""
        self.directory.mkdir(parents=True, exist_ok=True)
        lines = [f"{key}={value}" for key, value in self.properties.items()]
        self.properties_path.write_text("\n".join(lines) + "\n")

    def format(self) -> None:
        """Format the data directory with ``kafka.tools.StorageTool`` unless already done."""
        if (self.data_dir / "meta.properties").exists():
            return
        self.write_properties()
        cmd = self._java_command(
            "kafka.tools.StorageTool",
            "format",
            "-t", self.cluster_id,
            "-c", str(self.properties_path),
            *self.format_args,
        )  # fmt: skip
        try:
            done = subprocess.run(
                cmd,
                check=False,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=120,
            )
        except subprocess.TimeoutExpired as exc:
            raise KafkaStartError(f"formatting node {self.node_id} took over 120 s") from exc
        with open(self.log_path, "a") as log:
            log.write(f"=== kafka_harness: StorageTool format ({' '.join(cmd)})\n")
            log.write(done.stdout + done.stderr)
        if done.returncode != 0:
            raise KafkaStartError(
                f"formatting Kafka node {self.node_id} failed (exit {done.returncode}); "
                f"{self.log_path}:\n{_last_lines(done.stdout + done.stderr, _LOG_TAIL_LINES)}"
            )

    def start(self, timeout: float = 90.0, *, wait: bool = True) -> None:
        """Start the broker (formatting first if needed); no-op if it is running.

        With ``wait`` (default), block until the node lists itself in its metadata (it
        is registered and unfenced), or raise :class:`KafkaStartError` with the log tail
        after killing it.  In a multi-node cluster a node only becomes ready once a
        controller quorum (2 of 3) is up.
        """
        if self.is_running:
            return
        self.format()
        self.write_properties()
        cmd = self._java_command("kafka.Kafka", str(self.properties_path))
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with open(self.log_path, "ab") as log:
            log.write(f"=== kafka_harness: starting node {self.node_id} at {stamp}\n".encode())
            log.flush()
            # The child keeps its own copy of the log descriptor.
            self.process = subprocess.Popen(
                cmd,
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # Only prctl() runs between fork and exec (see _pdeathsig_preexec).
                preexec_fn=None if self.detached else _pdeathsig_preexec(),  # noqa: PLW1509
            )
        if not self.detached:
            _LIVE_NODES.add(self)
        if wait:
            try:
                self.wait_ready(timeout)
            except BaseException:
                self.kill()
                raise

    def wait_ready(self, timeout: float = 90.0, broker_ids: Sequence[int] = ()) -> None:
        """Wait until this node's metadata lists itself and every id in ``broker_ids``.

        Raises :class:`KafkaStartError` (with the log tail) if the process exits or the
        timeout passes.  Does not kill the process.
        """
        expected = {self.node_id, *broker_ids}
        deadline = time.monotonic() + timeout
        last: object = "no answer yet"
        while True:
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise self._start_error(f"exited with code {code} before becoming ready")
            try:
                seen = probe_brokers(self.bootstrap, timeout=2.0)
                if expected <= seen.keys():
                    return
                last = f"metadata lists brokers {sorted(seen)}"
            except (OSError, ValueError, struct.error) as exc:
                last = exc
            if time.monotonic() > deadline:
                raise self._start_error(
                    f"not ready after {timeout:.0f} s (waiting for brokers {sorted(expected)}; "
                    f"last probe: {last})"
                )
            time.sleep(0.2)

    def _start_error(self, what: str) -> KafkaStartError:
        tail = log_tail(self.log_path, 4000)
        start = tail.rfind("=== kafka_harness: starting node")
        current = tail[start:] if start >= 0 else tail
        errors = [line for line in current.splitlines() if _ERROR_LINE.search(line)]
        summary = ""
        if errors:
            summary = "First errors of this start:\n" + "\n".join(errors[:8]) + "\n"
        return KafkaStartError(
            f"Kafka node {self.node_id} ({self.bootstrap}) {what}.\n{summary}"
            f"Last lines of {self.log_path}:\n{_last_lines(current, _LOG_TAIL_LINES)}"
        )

    def send_signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the broker's process group if it is running."""
        if self.is_running and self.pid is not None:
            _kill_group(self.pid, sig)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop gracefully: SIGTERM, wait up to ``timeout`` s, then SIGKILL."""
        if self.process is not None:
            self.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.send_signal(signal.SIGKILL)
                self.process.wait()
        self._reap()

    def kill(self) -> None:
        """SIGKILL the broker (a crash: no controlled shutdown) and reap it."""
        if self.process is not None:
            self.send_signal(signal.SIGKILL)
            self.process.wait()
        self._reap()

    def restart(self, timeout: float = 90.0) -> None:
        """``stop()`` (no-op if already dead) then ``start()``: same ports, data, node id."""
        self.stop()
        self.start(timeout)

    def _reap(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            self.process = None
        _LIVE_NODES.discard(self)


# --------------------------------------------------------------------------- clusters


def default_properties(size: int) -> dict[str, str]:
    """Broker settings shared by all nodes of a ``size``-node test cluster.

    One node: every replication factor 1.  Three nodes: replication factor 3,
    ``min.insync.replicas=2`` and no unclean leader election, so that a SIGKILLed leader
    loses no write acknowledged with ``acks=all``.
    """
    replicas = min(size, 3)
    min_isr = 2 if replicas >= 3 else 1
    props = {
        "process.roles": "broker,controller",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "num.partitions": 1,
        "default.replication.factor": replicas,
        "min.insync.replicas": min_isr,
        "unclean.leader.election.enable": "false",
        "offsets.topic.replication.factor": replicas,
        "offsets.topic.num.partitions": 10,
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": min_isr,
        "transaction.state.log.num.partitions": 10,
        "share.coordinator.state.topic.replication.factor": replicas,
        "share.coordinator.state.topic.min.isr": min_isr,
        "share.coordinator.state.topic.num.partitions": 10,
        "group.initial.rebalance.delay.ms": 0,
        # Lean on 2 cores and a 512 MiB heap.
        "num.network.threads": 2,
        "num.io.threads": 4,
        "background.threads": 4,
        "log.cleaner.dedupe.buffer.size": 16 * 1024 * 1024,
        "log.segment.bytes": 64 * 1024 * 1024,
        # Fence a dead broker (and move its leaderships) after 4 s instead of 9 s.
        "broker.heartbeat.interval.ms": 1000,
        "broker.session.timeout.ms": 4000,
    }
    return {key: str(value) for key, value in props.items()}


class KafkaCluster:
    """A KRaft cluster of ``size`` combined broker+controller nodes on 127.0.0.1.

    One node uses a dynamic quorum formatted with ``--standalone``; several nodes use
    the static ``controller.quorum.voters`` form.  Use as a context manager, or call
    :meth:`start` and :meth:`stop`.  Without ``directory`` a temporary directory is used
    and deleted by :meth:`stop`.
    """

    def __init__(
        self,
        size: int = 1,
        *,
        directory: Path | None = None,
        overrides: Mapping[str, object] | None = None,
        version: str | None = None,
        heap: str = "512m",
        port: int = 0,
        startup_timeout: float = 90.0,
        detached: bool = False,
    ) -> None:
        """Describe a cluster; nothing is started.

        ``overrides`` are extra/replacement broker settings; ``port`` fixes the first
        node's client port (0 = pick free ports); ``heap`` is each JVM's ``-Xmx``;
        ``detached`` brokers outlive this process (used by the CLI).
        """
        if size < 1:
            raise ValueError("size must be >= 1")
        self.size = size
        self.version = version or kafka_version()
        self.overrides = {key: str(value) for key, value in (overrides or {}).items()}
        self.heap = heap
        self.requested_port = port
        self.startup_timeout = startup_timeout
        self.detached = detached
        self._own_directory = directory is None
        self.directory: Path | None = Path(directory) if directory is not None else None
        self.nodes: list[KafkaNode] = []
        self.cluster_id = ""
        self.failed = False

    def __repr__(self) -> str:
        return f"<KafkaCluster size={self.size} {self.bootstrap_servers or 'not started'}>"

    def __enter__(self) -> KafkaCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def bootstrap_servers(self) -> str:
        """``"127.0.0.1:p1,127.0.0.1:p2,..."`` of all nodes."""
        return ",".join(node.bootstrap for node in self.nodes)

    def node(self, node_id: int) -> KafkaNode:
        """The node with Kafka node id ``node_id`` (ids are 1..size)."""
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise KeyError(node_id)

    def _build_nodes(self, libs: Path) -> None:
        assert self.directory is not None
        ports = free_ports(2 * self.size)
        if self.requested_port:
            ports[0] = self.requested_port
        client_ports, controller_ports = ports[: self.size], ports[self.size :]
        self.cluster_id = new_cluster_id()
        ids = list(range(1, self.size + 1))
        if self.size == 1:
            quorum = {"controller.quorum.bootstrap.servers": f"127.0.0.1:{controller_ports[0]}"}
            format_args = ["--standalone"]
        else:
            voters = ",".join(
                f"{node_id}@127.0.0.1:{cport}"
                for node_id, cport in zip(ids, controller_ports, strict=True)
            )
            quorum = {"controller.quorum.voters": voters}
            format_args = []
        self.nodes = []
        for node_id, port, cport in zip(ids, client_ports, controller_ports, strict=True):
            node_dir = self.directory / f"node-{node_id}"
            props = {
                **default_properties(self.size),
                "node.id": str(node_id),
                "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
                "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
                "log.dirs": str(node_dir / "data"),
                **quorum,
                **self.overrides,
            }
            self.nodes.append(
                KafkaNode(
                    node_id=node_id,
                    directory=node_dir,
                    port=port,
                    controller_port=cport,
                    cluster_id=self.cluster_id,
                    properties=props,
                    format_args=format_args,
                    libs=libs,
                    heap=self.heap,
                    detached=self.detached,
                )
            )

    def start(self) -> None:
        """Download the jars if needed, format every node, start them, wait until ready.

        A no-op if all nodes run; otherwise the cluster starts afresh (new ports, empty
        data).  To bring back a single stopped or killed node use :meth:`KafkaNode.start`
        or :meth:`KafkaNode.restart`.

        Ready means every node's metadata lists every broker.  On failure all nodes are
        stopped and :class:`KafkaStartError` (with the failing node's log tail) is raised;
        a port clash with auto-picked ports is retried once with new ports.
        """
        if self.nodes and all(node.is_running for node in self.nodes):
            return
        self._terminate_nodes(timeout=5)  # a partly running cluster starts afresh
        libs = ensure_kafka_libs(self.version)
        find_java()
        if self.directory is None:
            self.directory = Path(tempfile.mkdtemp(prefix="polybus-kafka-"))
        if not self.detached:
            _LIVE_CLUSTERS.add(self)
        attempts = 1 if self.requested_port else 2
        for attempt in range(1, attempts + 1):
            for node in self.nodes:
                shutil.rmtree(node.directory, ignore_errors=True)
            self._build_nodes(libs)
            try:
                self._start_nodes()
                self.failed = False
                return
            except KafkaStartError as exc:
                self._terminate_nodes(timeout=5)
                self.failed = True
                if attempt == attempts or "Address already in use" not in str(exc):
                    raise

    def _start_nodes(self) -> None:
        with ThreadPoolExecutor(max_workers=self.size) as pool:
            # StorageTool runs are short-lived JVMs; the brokers themselves are started
            # from this thread (see _pdeathsig_preexec).
            for future in [pool.submit(node.format) for node in self.nodes]:
                future.result()
        for node in self.nodes:
            node.start(wait=False)
        self.wait_ready()

    def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until every node's metadata lists every node of the cluster.

        All nodes must be running (e.g. after a killed node was started again); raises
        :class:`KafkaStartError` with the log tail of the first node that is not ready.
        """
        deadline = time.monotonic() + (timeout or self.startup_timeout)
        ids = [node.node_id for node in self.nodes]
        for node in self.nodes:
            node.wait_ready(max(1.0, deadline - time.monotonic()), broker_ids=ids)

    def _terminate_nodes(self, timeout: float) -> None:
        _terminate([node for node in self.nodes if node.process is not None], timeout)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop all nodes (SIGTERM together, SIGKILL after ``timeout`` s).

        Deletes the cluster directory if it was a temporary one, unless the last
        :meth:`start` failed (the logs are kept for inspection).
        """
        self._terminate_nodes(timeout)
        _LIVE_CLUSTERS.discard(self)
        if self._own_directory and self.directory is not None and not self.failed:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
