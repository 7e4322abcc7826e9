"""A real Apache Kafka broker: one KRaft node that is both broker and controller, on
loopback, for the tests and runs that the embedded Tansu broker (`embedded`) can't
serve: data on disk that survives a restart, Kafka's own group coordinator, log
compaction, the exact error codes and timestamp checks of the real thing.

Needs `java` (17 or newer) and, once per Kafka version, `mvn`: the jars come from
Maven Central through deploy/kafka/pom.xml into ~/.cache/ioc-streams/kafka-<version>/
(outside the repository, shared by every checkout and run).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections import deque
from pathlib import Path
from typing import IO, Self

from models.errors import BrokerError
from streams.devtools.brokers.process import BrokerProcess, kafka_answers
from streams.devtools.processes import free_port, spawn, stop

__all__ = ["ApacheKafkaBroker", "fetch_jars", "jar_cache_dir"]

DEPLOY_DIR = Path(__file__).resolve().parents[3] / "deploy" / "kafka"
STARTED_LINE = "Kafka Server started"  # KafkaRaftServer, in 3.9 and 4.x alike
SEVEN_DAYS_MS = 7 * 24 * 3600 * 1000
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # Debian's mvn colours even with -B -q
# Java stack frames: left out of the lines an error message quotes, so that the
# exception messages and "Caused by" lines fit in it.
_STACK_FRAME = re.compile(r"^\s+(at |\.\.\. \d+ more)")

# Kafka 3.x logs through reload4j (log4j 1): its configuration is this small, so it is
# written beside server.properties instead of living in deploy/kafka.
_LOG4J1_PROPERTIES = """\
log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaRaftServer=INFO
log4j.logger.kafka.server.KafkaServer=INFO
log4j.logger.kafka.Kafka$=INFO
"""


def _major(version: str) -> int:
    return int(version.split(".", 1)[0])


def jar_cache_dir(version: str) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "ioc-streams" / f"kafka-{version}"


def _has_jars(jars_dir: Path) -> bool:
    return any(jars_dir.glob("kafka_2.13-*.jar"))


def fetch_jars(version: str, jars_dir: Path) -> list[Path]:
    """The broker's runtime jars in `jars_dir`, fetched with Maven if it has none."""
    if not _has_jars(jars_dir):
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerError(
                f"no Kafka {version} jars in {jars_dir} and no `mvn` to fetch them: "
                "install Maven (apt-get install maven) or fill that folder by hand"
            )
        jars_dir.parent.mkdir(parents=True, exist_ok=True)
        # Fetch into a fresh sibling folder and rename it into place, so an interrupted
        # or concurrent fetch never leaves a half-filled folder that looks complete.
        staging = Path(tempfile.mkdtemp(prefix=f".{jars_dir.name}-", dir=jars_dir.parent))
        command = [
            mvn, "-B", "-q", "-f", str(DEPLOY_DIR / "pom.xml"),
            "dependency:copy-dependencies", "-DincludeScope=runtime",
            f"-DoutputDirectory={staging}", f"-Dkafka.version={version}",
        ]  # fmt: skip
        if _major(version) < 4:
            command += ["-P", "kafka3"]
        try:
            result = subprocess.run(
                command, capture_output=True, text=True, timeout=900, check=False
            )
            if result.returncode != 0 or not _has_jars(staging):
                raise BrokerError(f"Maven could not fetch Kafka {version}:\n{_last(result)}")
            if jars_dir.is_dir() and not any(jars_dir.iterdir()):
                jars_dir.rmdir()  # an empty folder made beforehand: take its place
            try:
                staging.rename(jars_dir)
            except OSError:
                if not _has_jars(jars_dir):  # not another fetch that won the race
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return sorted(jars_dir.glob("*.jar"))


def _last(result: subprocess.CompletedProcess[str], chars: int = 2000) -> str:
    """The end of a tool's output for an error message, without colour codes."""
    return _ANSI.sub("", result.stdout + result.stderr).strip()[-chars:]


def _cluster_id() -> str:
    """A random Kafka Uuid as its tools print it: 16 bytes, base64url, no padding.
    Like Kafka's Uuid.randomUuid(), never one that starts with '-', which the
    storage tool's argument parser would take for an option."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


class ApacheKafkaBroker(BrokerProcess):
    """Starts an Apache Kafka broker on host:port, waits until it answers Kafka
    requests, stops it. Same interface as `EmbeddedBroker`; in addition
    `stop(remove_data=False)` then `start()` restarts it on the same data.

    Use as a context manager, or call start() and stop(). The data folder (a new
    temporary one unless `data_dir` is given) is removed on stop unless `keep_data`.
    """

    # C1 only (TieredStopAtLevel=1): measured on 2 cores, the broker starts ~0.8 s
    # sooner and uses half the CPU over a short test (50,000 records from aiokafka:
    # 1.4 s of broker CPU instead of 3), because C2 compiles more than it saves in a
    # run of minutes. A long benchmark of the broker itself may set its own options.
    jvm_options: tuple[str, ...] = (
        "-Xmx512m", "-Xms512m", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true",
    )  # fmt: skip

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 9092,
        controller_port: int | None = None,
        *,
        jars_dir: Path | None = None,
        data_dir: Path | None = None,
        keep_data: bool = False,
        kafka_version: str = "4.4.0",
        log: IO[bytes] | int | None = subprocess.DEVNULL,
    ) -> None:
        self.host = host
        self.port = port
        self.controller_port = controller_port
        self.kafka_version = kafka_version
        self.jars_dir = jars_dir or jar_cache_dir(kafka_version)
        self.data_dir = data_dir
        self.keep_data = keep_data
        self._log = log
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._started = threading.Event()
        self._tail: deque[str] = deque(maxlen=30)
        self._archive_dump: Path | None = None
        self._own_data_dir = False

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 90.0) -> Self:
        """Fetches the jars if needed (once per version; not counted in `timeout`),
        formats the storage unless it holds data, starts the broker and waits up to
        `timeout` seconds until it logged its start and answers Kafka requests."""
        if self._process is not None:
            return self
        java = shutil.which("java")
        if java is None:
            raise BrokerError("no `java` on PATH: Kafka needs Java 17 or newer")
        if kafka_answers(self.host, self.port, timeout=0.5):
            raise BrokerError(
                f"something already answers Kafka requests on {self.bootstrap}; "
                "stop it or choose another port (IOC_BROKER__PORT)"
            )
        jars = fetch_jars(self.kafka_version, self.jars_dir)  # not counted in `timeout`
        classpath = os.pathsep.join(str(jar) for jar in jars)
        if self.controller_port is None:
            self.controller_port = free_port(self.host)  # kept for restarts
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="ioc-kafka-"))
            self._own_data_dir = True
        self.data_dir.mkdir(parents=True, exist_ok=True)
        properties = self.data_dir / "server.properties"
        properties.write_text(self._server_properties())
        if _major(self.kafka_version) >= 4:
            logging = f"-Dlog4j2.configurationFile={DEPLOY_DIR / 'log4j2.properties'}"
        else:
            log4j = self.data_dir / "log4j.properties"
            log4j.write_text(_LOG4J1_PROPERTIES)
            logging = f"-Dlog4j.configuration={log4j.as_uri()}"
        base = [java, *self.jvm_options, logging, "-Xlog:cds=off", "-Xlog:cds+dynamic=off"]
        # A restart keeps the formatted storage (meta.properties) and so the data.
        if not (self._log_dir / "meta.properties").exists():
            try:
                self._format([*base, *self._class_archive(dump=False)], classpath, properties)
            except BrokerError:
                self.stop()  # removes the half-made data folder unless keep_data
                raise
        self._started.clear()
        self._tail.clear()
        deadline = time.monotonic() + timeout
        command = [*base, *self._class_archive(dump=True), "-cp", classpath, "kafka.Kafka"]
        self._process = spawn(
            [*command, str(properties)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=self.data_dir,
        )
        self._reader = threading.Thread(
            target=self._read_output, args=(self._process,), name="kafka-output", daemon=True
        )
        self._reader.start()
        while not (self._started.is_set() and kafka_answers(self.host, self.port)):
            if self._process.poll() is not None:
                code = self._process.returncode
                self.stop()
                raise BrokerError(
                    f"Kafka exited with code {code} before answering on {self.bootstrap}; "
                    "its last lines:\n" + "\n".join(self._tail)
                )
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(
                    f"Kafka did not answer on {self.bootstrap} in {timeout} s; its last lines:\n"
                    + "\n".join(self._tail)
                )
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = 30.0, *, remove_data: bool | None = None) -> None:
        """SIGTERM (Kafka shuts down cleanly: a restart needs no log recovery), then
        SIGKILL after `timeout`. Removes the data folder if `remove_data`, which
        defaults to `not keep_data`."""
        process, self._process = self._process, None
        if process is not None:
            code = stop(process, timeout)
            if self._reader is not None:
                self._reader.join(5.0)
            # 143: the JVM's exit status after its shutdown hooks ran on SIGTERM.
            self._keep_class_archive(clean_exit=code in (0, 143, -15))
        if remove_data is None:
            remove_data = not self.keep_data
        if remove_data and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            if self._own_data_dir:
                self.data_dir, self._own_data_dir = None, False

    @property
    def _log_dir(self) -> Path:
        assert self.data_dir is not None
        return self.data_dir / "kafka-logs"

    def _server_properties(self) -> str:
        host, port, controller = self.host, self.port, self.controller_port
        settings: dict[str, object] = {
            # One node that is the whole cluster: its own controller quorum.
            "process.roles": "broker,controller",
            "node.id": 1,
            "controller.quorum.voters": f"1@{host}:{controller}",
            "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller}",
            "advertised.listeners": f"PLAINTEXT://{host}:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": self._log_dir,
            # Internal topics default to 3 replicas, which one node can never place.
            "offsets.topic.replication.factor": 1,
            "transaction.state.log.replication.factor": 1,
            "transaction.state.log.min.isr": 1,
            # Internal topics default to 50 partitions each: the first group join then
            # takes 0.4-0.9 s instead of 0.2 s, and one node gains nothing from them.
            "offsets.topic.num.partitions": 4,
            "transaction.state.log.num.partitions": 4,
            # A group's first member is assigned at once, not after 3 s of waiting.
            "group.initial.rebalance.delay.ms": 0,
            # The cleaner's offset map is 128 MiB by default, allocated up front. Kafka
            # wants more than 1 MiB per cleaner thread: exactly 1048576 is refused.
            "log.cleaner.dedupe.buffer.size": 2 * 1024 * 1024,
            # 4.x rejects records stamped more than 1 h ahead of its clock; replayed
            # and simulated IoT data may be stamped ahead of it.
            "log.message.timestamp.after.max.ms": SEVEN_DAYS_MS,
            "num.partitions": 1,
            "auto.create.topics.enable": "true",
            # Threads sized for 2 cores rather than for a production host.
            "num.network.threads": 2,
            "num.io.threads": 2,
            "background.threads": 2,
            "num.recovery.threads.per.data.dir": 1,
            "log.cleaner.threads": 1,
        }
        if _major(self.kafka_version) >= 4:  # share groups (KIP-932) exist from 4.0 on
            settings["share.coordinator.state.topic.replication.factor"] = 1
            settings["share.coordinator.state.topic.min.isr"] = 1
            settings["share.coordinator.state.topic.num.partitions"] = 1
        return "".join(f"{key}={value}\n" for key, value in settings.items())

    def _format(self, base: list[str], classpath: str, properties: Path) -> None:
        """Writes meta.properties with a new cluster id. No --standalone: the voter
        set comes from controller.quorum.voters."""
        command = [
            *base, "-cp", classpath, "kafka.tools.StorageTool", "format",
            "-t", _cluster_id(), "-c", str(properties),
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise BrokerError(
                f"formatting Kafka storage in {self._log_dir} failed:\n{_last(result)}"
            )

    def _class_archive(self, *, dump: bool) -> list[str]:
        """JVM options for a class-data-sharing archive of the broker's classes.

        Most of the broker's ~3 s start is loading and verifying ~6,000 classes. A
        dynamic CDS archive of them, written by the first clean run of a jar set and
        mapped by every later one (the storage tool's too), saves about 1.3 s. It is
        dumped to a private file, moved into place only after a clean exit (see
        _keep_class_archive); the JVM ignores an archive that doesn't match it or the
        class path (the -Xlog options above keep its warnings quiet).
        """
        archive = self._archive_path()
        if archive.exists():
            return [f"-XX:SharedArchiveFile={archive}"]
        if dump and os.access(self.jars_dir, os.W_OK):
            self._archive_dump = self.jars_dir / f".kafka-{os.getpid()}-{id(self)}.jsa"
            return [f"-XX:ArchiveClassesAtExit={self._archive_dump}"]
        return []

    def _archive_path(self) -> Path:
        """One archive per Java installation: an archive from another JVM build (say
        after a JDK upgrade) would be ignored for good instead of replaced."""
        java = Path(shutil.which("java") or "java").resolve()
        stat = java.stat() if java.exists() else None
        key = f"{java}:{stat.st_mtime_ns if stat else 0}:{stat.st_size if stat else 0}"
        return self.jars_dir / f"kafka-{hashlib.sha1(key.encode()).hexdigest()[:10]}.jsa"

    def _keep_class_archive(self, *, clean_exit: bool) -> None:
        dump, self._archive_dump = self._archive_dump, None
        if dump is None:
            return
        if clean_exit and dump.exists() and dump.stat().st_size > 0:
            dump.replace(self._archive_path())
        else:
            dump.unlink(missing_ok=True)

    def _read_output(self, process: subprocess.Popen[bytes]) -> None:
        """Forwards the broker's output to `log` and watches for the started line;
        it also keeps the pipe drained, which a running broker needs."""
        assert process.stdout is not None
        for line in iter(process.stdout.readline, b""):
            text = line.decode(errors="replace").rstrip()
            if not _STACK_FRAME.match(text):
                self._tail.append(text)
            if STARTED_LINE in text:
                self._started.set()
            try:
                self._forward(line)
            except (OSError, ValueError):  # `log` closed or failing: keep draining
                self._log = subprocess.DEVNULL
        process.stdout.close()

    def _forward(self, line: bytes) -> None:
        log = self._log
        if log is None:  # as if the broker inherited this process's stdout
            os.write(1, line)
        elif isinstance(log, int):
            if log >= 0:  # a file descriptor; DEVNULL and the other constants are < 0
                os.write(log, line)
        else:
            log.write(line)
            log.flush()
