"""Real Apache Kafka (KRaft) brokers for the polybus tests, started by the project itself.

The broker jars come from Maven Central (``pom.xml`` next to this file) and are cached;
each broker is a ``java ... kafka.Kafka server.properties`` process running as a combined
broker+controller node on 127.0.0.1.  No Docker, no Kafka tarball.

Typical use::

    with KafkaCluster(size=3) as cluster:
        client = make_client(cluster.bootstrap_servers)
        leader = cluster.leader("orders", 0)   # the KafkaNode leading orders[0]
        leader.kill()                # SIGKILL
        leader.restart()             # same ports, data directory and node id
        cluster.restart()            # every node, data kept

    with KafkaCluster(sasl_users={"alice": "alice-secret"}) as secured:
        # SASL_PLAINTEXT + SASL/PLAIN, StandardAuthorizer, no ACL = no access
        secured.grant("User:alice", ["write", "describe"], topic="orders")

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
process that started them dies (Linux ``PR_SET_PDEATHSIG``, whichever thread started
or restarted them: see :class:`_Spawner`), and are stopped by an ``atexit`` hook
otherwise.  The detached broker of the CLI (``python -m tools.kafka_harness
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
import queue
import random
import re
import secrets
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
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cache
from pathlib import Path
from types import TracebackType

from tools.kafka_harness._logs import RepeatFilter, quiet_repeats
from tools.kafka_harness._protocol import (
    ERROR_NAMES,
    Acl,
    ClusterMetadata,
    Connection,
    KafkaProtocolError,
    PartitionMetadata,
    TopicMetadata,
)

__all__ = [
    "DEFAULT_KAFKA_VERSION",
    "HARNESS_DIR",
    "REPO_ROOT",
    "RUN_DIR",
    "Acl",
    "ClusterMetadata",
    "KafkaCluster",
    "KafkaHarnessError",
    "KafkaNode",
    "KafkaProtocolError",
    "KafkaStartError",
    "KafkaUnavailable",
    "NoLeaderError",
    "PartitionMetadata",
    "RepeatFilter",
    "TopicMetadata",
    "cache_root",
    "ensure_kafka_libs",
    "find_java",
    "kafka_version",
    "libs_dir",
    "missing_prerequisites",
    "probe_brokers",
    "quiet_repeats",
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


class NoLeaderError(KafkaHarnessError):
    """A partition is unknown or has no leader (within the timeout asked for)."""


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
            done = _run_tool(cmd, timeout=900)
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


def _run_tool(cmd: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a one-shot tool (Maven, Kafka's StorageTool) to its end, its output kept;
    ``subprocess.TimeoutExpired`` after ``timeout`` seconds."""
    return subprocess.run(
        cmd, check=False, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
    )


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


def probe_brokers(
    address: str, timeout: float = 3.0, *, sasl: tuple[str, str] | None = None
) -> dict[int, str]:
    """Ask the broker at ``"host:port"`` for cluster metadata; return ``{node id: "h:p"}``.

    Sends a raw Kafka Metadata v4 request (no topics) over a socket, after a SASL/PLAIN
    handshake when ``sasl=(user, password)`` is given.  A KRaft broker only lists
    registered, unfenced brokers, so seeing a node id here means that broker is serving.
    Raises ``OSError`` (or ``ConnectionError``/``ValueError``, including
    :class:`KafkaProtocolError`) on failure.
    """
    with Connection(address, timeout, sasl) as connection:
        return connection.metadata(()).brokers


def _pdeathsig_preexec() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGKILL the child when the forking thread dies.

    Only :class:`_Spawner`'s thread, which lives as long as the process, may use it.
    """
    if not sys.platform.startswith("linux"):
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


_SpawnJob = tuple[list[str], Path, int, "Future[subprocess.Popen[bytes]]"]


class _Spawner:
    """Forks every broker from one long-lived daemon thread of this process.

    Linux fires ``PR_SET_PDEATHSIG`` when the *thread* that forked the child exits, not
    when the process does.  A broker forked from a short-lived thread (a helper thread
    of a test, a pool worker) would be SIGKILLed as soon as that thread ends; without
    the safeguard it outlives a Python process that dies.  This thread is never joined
    (a daemon blocked on its queue until the process exits), so the safeguard holds
    whichever thread starts or restarts a node.  Thread-safe; a forked child process
    gets a thread of its own on first use.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[_SpawnJob] | None = None
        self._owner = 0  # the pid whose thread serves self._jobs

    def popen(self, cmd: list[str], cwd: Path, log_fd: int) -> subprocess.Popen[bytes]:
        """Start ``cmd`` in ``cwd`` in a session of its own, stdout and stderr to
        ``log_fd``, stdin from ``/dev/null``, killed when this process dies."""
        with self._lock:
            if self._jobs is None or self._owner != os.getpid():
                self._jobs = queue.SimpleQueue()
                self._owner = os.getpid()
                threading.Thread(
                    target=self._serve,
                    args=(self._jobs,),
                    name="kafka-harness-spawner",
                    daemon=True,
                ).start()
            jobs = self._jobs
        done: Future[subprocess.Popen[bytes]] = Future()
        jobs.put((cmd, cwd, log_fd, done))
        try:
            return done.result()
        except BaseException:
            # Interrupted (Ctrl-C) while it was being forked: kill it once it is.
            done.add_done_callback(_kill_spawned)
            raise

    @staticmethod
    def _serve(jobs: queue.SimpleQueue[_SpawnJob]) -> None:
        while True:
            cmd, cwd, log_fd, done = jobs.get()
            if not done.set_running_or_notify_cancel():
                continue
            try:
                process = subprocess.Popen(
                    cmd,
                    cwd=cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=log_fd,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    # Only prctl() runs between fork and exec.
                    preexec_fn=_pdeathsig_preexec(),  # noqa: PLW1509
                )
            except BaseException as exc:
                done.set_exception(exc)
            else:
                done.set_result(process)


def _kill_spawned(done: Future[subprocess.Popen[bytes]]) -> None:
    if not done.cancelled() and done.exception() is None:
        _kill_group(done.result().pid, signal.SIGKILL)


_SPAWNER = _Spawner()


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
        sasl: tuple[str, str] | None = None,
    ) -> None:
        """Describe a node; nothing is started.

        ``properties`` is the complete ``server.properties`` content.  ``format_args`` are
        the quorum arguments of ``StorageTool format`` (``["--standalone"]`` or none for
        static voters).  ``detached`` nodes outlive this Python process (CLI mode).
        ``sasl=(user, password)``: the client listener wants SASL/PLAIN, and the
        harness's own requests (readiness, metadata, ACLs) log in as that user.
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
        self.sasl = sasl
        self.process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.is_running else "stopped"
        return f"<KafkaNode {self.node_id} {self.bootstrap} {state}>"

    # -- properties

    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:<port>"`` of this node's client listener (PLAINTEXT, or
        SASL_PLAINTEXT when the node has :attr:`sasl` credentials)."""
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
            done = _run_tool(cmd, timeout=120)
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
            if self.detached:  # outlives this process: no parent-death signal
                self.process = subprocess.Popen(
                    cmd,
                    cwd=self.directory,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            else:
                self.process = _SPAWNER.popen(cmd, self.directory, log.fileno())
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
                seen = probe_brokers(self.bootstrap, timeout=2.0, sasl=self.sasl)
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

    def connect(self, timeout: float = 3.0) -> Connection:
        """A protocol connection to this node (logged in as :attr:`sasl` if set): its
        ``metadata(topics)``, ``create_acls(acls)`` and ``describe_acls()``."""
        return Connection(self.bootstrap, timeout, self.sasl)

    def metadata(self, topics: Sequence[str] | None = (), timeout: float = 3.0) -> ClusterMetadata:
        """This node's view of the cluster and of ``topics`` (``None``: all topics).

        Raises ``OSError`` if the node does not answer, ``ValueError`` on a bad answer.
        """
        with self.connect(timeout) as connection:
            return connection.metadata(topics)

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
        # Tests of slow group members may use session timeouts down to 1 s (6 s is
        # the broker's default least).
        "group.min.session.timeout.ms": 1000,
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


#: The user the brokers and controllers of a SASL cluster log in as; a super user.
ADMIN_USER = "admin"
_JAAS_UNSAFE = re.compile(r'["\\\s;=\x00-\x1f]')


def sasl_properties(users: Mapping[str, str], admin_password: str) -> dict[str, str]:
    """Settings of a node whose client and controller listeners take SASL/PLAIN only.

    ``users`` are ``{name: password}`` (defined in the JAAS config, PLAIN's own user
    store); :data:`ADMIN_USER` with ``admin_password`` is added and is what the brokers
    and controllers log in as, so it is the one super user.  The StandardAuthorizer
    denies everything else that no ACL allows (``allow.everyone.if.no.acl.found=false``).
    """
    everyone = {ADMIN_USER: admin_password, **users}
    for name, password in everyone.items():
        if not name or _JAAS_UNSAFE.search(name) or _JAAS_UNSAFE.search(password):
            raise ValueError(
                f"SASL user {name!r}: names and passwords may not hold quotes, "
                "backslashes, white space, ';', '=' or control characters"
            )
    entries = " ".join(f'user_{name}="{password}"' for name, password in everyone.items())
    jaas = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{ADMIN_USER}" password="{admin_password}" {entries};'
    )
    return {
        "listener.security.protocol.map": "CONTROLLER:SASL_PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
        "inter.broker.listener.name": "SASL_PLAINTEXT",
        "sasl.enabled.mechanisms": "PLAIN",
        "sasl.mechanism.inter.broker.protocol": "PLAIN",
        "sasl.mechanism.controller.protocol": "PLAIN",
        # One JAAS entry per listener: the users it accepts, and who this node logs in
        # as when it connects to that listener of another node (or of itself).
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": jaas,
        "listener.name.controller.plain.sasl.jaas.config": jaas,
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found": "false",
        "super.users": f"User:{ADMIN_USER}",
    }


class KafkaCluster:
    """A KRaft cluster of ``size`` combined broker+controller nodes on 127.0.0.1.

    One node uses a dynamic quorum formatted with ``--standalone``; several nodes use
    the static ``controller.quorum.voters`` form.  Use as a context manager, or call
    :meth:`start` and :meth:`stop`.  Without ``directory`` a temporary directory is used
    and deleted by :meth:`stop`.

    With ``sasl_users={"alice": "secret", ...}`` every listener takes SASL_PLAINTEXT
    with SASL/PLAIN only, the StandardAuthorizer denies what no ACL allows, and the
    nodes (and the harness) log in as the super user :data:`ADMIN_USER` with
    :attr:`admin_password`; :meth:`grant` adds ACLs.

    Not thread-safe: drive one cluster from one thread at a time (any thread: see
    :class:`_Spawner`).
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
        sasl_users: Mapping[str, str] | None = None,
    ) -> None:
        """Describe a cluster; nothing is started.

        ``overrides`` are extra/replacement broker settings; ``port`` fixes the first
        node's client port (0 = pick free ports); ``heap`` is each JVM's ``-Xmx``;
        ``detached`` brokers outlive this process (used by the CLI); ``sasl_users``
        turns on SASL/PLAIN and the authorizer (see the class docstring).
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
        self.sasl_users = dict(sasl_users) if sasl_users is not None else None
        self.admin_password = secrets.token_hex(12) if sasl_users is not None else ""
        if self.sasl_users is not None:
            if ADMIN_USER in self.sasl_users:
                raise ValueError(f"{ADMIN_USER!r} is the harness's own super user")
            sasl_properties(self.sasl_users, self.admin_password)  # checks the names
        self._own_directory = directory is None
        self.directory: Path | None = Path(directory) if directory is not None else None
        self.nodes: list[KafkaNode] = []
        self.cluster_id = ""
        self.failed = False
        self._formatted = False  # the last fresh start succeeded: start() may resume

    def __repr__(self) -> str:
        secured = " SASL_PLAINTEXT" if self.sasl_users is not None else ""
        return f"<KafkaCluster size={self.size}{secured} {self.bootstrap_servers or 'not started'}>"

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

    @property
    def admin(self) -> tuple[str, str] | None:
        """``(ADMIN_USER, admin_password)`` of a SASL cluster, else ``None``."""
        return (ADMIN_USER, self.admin_password) if self.sasl_users is not None else None

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
        security: dict[str, str] = {}
        listener = "PLAINTEXT"
        if self.sasl_users is not None:
            security = sasl_properties(self.sasl_users, self.admin_password)
            listener = "SASL_PLAINTEXT"
        self.nodes = []
        for node_id, port, cport in zip(ids, client_ports, controller_ports, strict=True):
            node_dir = self.directory / f"node-{node_id}"
            props = {
                **default_properties(self.size),
                **security,
                "node.id": str(node_id),
                "listeners": f"{listener}://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
                "advertised.listeners": f"{listener}://127.0.0.1:{port}",
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
                    sasl=self.admin,
                )
            )

    # -- lifecycle

    def start(self) -> None:
        """Start what is not running and wait until every node is ready.

        A no-op if all nodes run.  If the cluster ran before and its data is still there
        (stopped, killed or partly running, with a ``directory`` of the caller's or
        before :meth:`stop` deleted the temporary one), only the stopped nodes are
        started, with their ports, node ids and data.  Otherwise it starts afresh: the
        jars are downloaded if needed, every node is formatted, new ports are picked.

        Ready means every node's metadata lists every broker.  A fresh start that fails
        stops all nodes and raises :class:`KafkaStartError` (with the failing node's log
        tail); a port clash with auto-picked ports is retried once with new ports.  A
        resumed start that fails raises and leaves the nodes as they are.
        """
        if self.nodes and all(node.is_running for node in self.nodes):
            return
        if not self.detached:
            _LIVE_CLUSTERS.add(self)
        if self._resumable():
            try:
                for node in self.nodes:
                    if not node.is_running:
                        node.start(wait=False)
                self.wait_ready()
            except KafkaStartError:
                self.failed = True
                raise
            self.failed = False
            return
        self._terminate_nodes(timeout=5)
        libs = ensure_kafka_libs(self.version)
        find_java()
        if self.directory is None:
            self.directory = Path(tempfile.mkdtemp(prefix="polybus-kafka-"))
        attempts = 1 if self.requested_port else 2
        for attempt in range(1, attempts + 1):
            for node in self.nodes:
                shutil.rmtree(node.directory, ignore_errors=True)
            self._build_nodes(libs)
            try:
                self._start_nodes()
                self.failed = False
                self._formatted = True
                return
            except KafkaStartError as exc:
                self._terminate_nodes(timeout=5)
                self.failed = True
                self._formatted = False
                if attempt == attempts or "Address already in use" not in str(exc):
                    raise

    def _resumable(self) -> bool:
        return (
            self._formatted
            and bool(self.nodes)
            and all((node.data_dir / "meta.properties").is_file() for node in self.nodes)
        )

    def _start_nodes(self) -> None:
        with ThreadPoolExecutor(max_workers=self.size) as pool:
            # StorageTool runs are short-lived JVMs; a broker may be started from any
            # thread (see _Spawner).
            for future in [pool.submit(node.format) for node in self.nodes]:
                future.result()
        for node in self.nodes:
            node.start(wait=False)
        self.wait_ready()

    def restart(self, stop_timeout: float = 15.0) -> None:
        """Stop every node (SIGTERM together, SIGKILL after ``stop_timeout`` s), then
        start them all again with the same ports, node ids and data, and wait until the
        cluster is ready.  A cluster that never ran is just started."""
        self._terminate_nodes(stop_timeout)
        self.start()

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
        :meth:`start` failed (the logs are kept for inspection); then the next
        :meth:`start` starts afresh.  A ``directory`` of the caller's is kept, and the
        next :meth:`start` resumes from it.
        """
        self._terminate_nodes(timeout)
        _LIVE_CLUSTERS.discard(self)
        if self._own_directory and self.directory is not None and not self.failed:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
            self._formatted = False

    # -- metadata

    def _running(self) -> list[KafkaNode]:
        return [node for node in self.nodes if node.is_running]

    def metadata(self, topics: Sequence[str] | None = (), timeout: float = 3.0) -> ClusterMetadata:
        """Cluster metadata from the first running node that answers (see
        :meth:`KafkaNode.metadata`); ``OSError`` if none does."""
        problems = []
        for node in self._running():
            try:
                return node.metadata(topics, timeout)
            except (OSError, ValueError, struct.error) as exc:
                problems.append(f"{node.bootstrap}: {exc}")
        raise OSError(f"no node of {self!r} answered a metadata request: {problems}")

    def leader(
        self, topic: str, partition: int = 0, timeout: float = 15.0, *, running: bool = False
    ) -> KafkaNode:
        """The node that leads ``topic[partition]``, asking each running node in turn.

        Waits up to ``timeout`` s while the topic is unknown (just created) or the
        partition has no leader, then raises :class:`NoLeaderError` saying what the
        nodes answered.  A killed leader stays the leader in the metadata until the
        controller fences it (``broker.session.timeout.ms``, 4 s); with ``running`` the
        wait goes on until the leader is a running node.
        """
        deadline = time.monotonic() + timeout
        last = "no running node"
        while True:
            for node in self._running():
                try:
                    described = node.metadata([topic], timeout=2.0).topics.get(topic)
                except (OSError, ValueError, struct.error) as exc:
                    last = f"node {node.node_id}: {exc}"
                    continue
                if described is None or described.error_code:
                    code = described.error_code if described is not None else -1
                    last = f"node {node.node_id}: topic error {ERROR_NAMES.get(code, code)}"
                elif partition not in described.partitions:
                    last = (
                        f"node {node.node_id}: the topic has partitions "
                        f"{sorted(described.partitions)}"
                    )
                elif (leader := described.partitions[partition].leader) < 0:
                    last = f"node {node.node_id}: no leader"
                elif leader not in {n.node_id for n in self.nodes}:
                    last = f"node {node.node_id}: leader {leader} is not a node of this cluster"
                elif running and not self.node(leader).is_running:
                    last = f"node {node.node_id}: leader {leader}, which is not running"
                else:
                    return self.node(leader)
            if time.monotonic() >= deadline:
                raise NoLeaderError(
                    f"{topic}[{partition}] has no leader after {timeout:g} s ({last})"
                )
            time.sleep(0.1)

    # -- ACLs

    def grant(
        self,
        principal: str,
        operations: Sequence[str],
        *,
        topic: str | None = None,
        group: str | None = None,
        cluster: bool = False,
        prefixed: bool = False,
        timeout: float = 30.0,
    ) -> list[Acl]:
        """Allow ``principal`` (``"User:alice"``, or just ``"alice"``) ``operations``
        (``"read"``, ``"write"``, ``"describe"``, ``"create"``, ``"all"``, ...) on the
        ``topic``, the ``group`` and/or the cluster; ``prefixed``: on every topic or
        group whose name starts with the one given.  Returns the ACLs once every running
        node's authorizer holds them (see :meth:`add_acls`)."""
        if isinstance(operations, str):
            operations = [operations]
        if ":" not in principal:
            principal = f"User:{principal}"
        pattern = "prefixed" if prefixed else "literal"
        resources = [("topic", topic), ("group", group)] + (
            [("cluster", "kafka-cluster")] if cluster else []
        )
        acls = [
            Acl(
                principal,
                operation.lower(),
                kind,
                name,
                pattern if kind != "cluster" else "literal",
            )
            for kind, name in resources
            if name is not None
            for operation in operations
        ]
        if not acls:
            raise ValueError("grant() needs a topic, a group or cluster=True")
        self.add_acls(acls, timeout)
        return acls

    def add_acls(self, acls: Sequence[Acl], timeout: float = 30.0) -> None:
        """Create ``acls`` (a CreateAcls request, logged in as the super user) and wait
        until every running node's authorizer lists them, so that they are in force on
        whichever node a client talks to.  Raises :class:`KafkaProtocolError` if the
        cluster refuses one (``SECURITY_DISABLED`` without ``sasl_users``) and
        :class:`KafkaHarnessError` if they do not show within ``timeout`` s."""
        running = self._running()
        if not running:
            raise KafkaHarnessError(f"{self!r} has no running node to create ACLs on")
        with running[0].connect(timeout) as connection:
            connection.create_acls(acls)
        wanted = set(acls)
        deadline = time.monotonic() + timeout
        for node in running:
            while True:
                with node.connect(timeout) as connection:
                    missing = wanted - connection.describe_acls()
                if not missing:
                    break
                if time.monotonic() >= deadline:
                    raise KafkaHarnessError(
                        f"node {node.node_id} does not list {sorted(map(str, missing))} "
                        f"{timeout:g} s after they were created"
                    )
                time.sleep(0.05)
