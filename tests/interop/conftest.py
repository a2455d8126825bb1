"""Real ZooKeeper 3.8 (Debian's zookeeper package) beside our nodes.

Skipped cleanly when /usr/share/java/zookeeper.jar is missing. Each JVM gets
its own dir with zoo.cfg, myid and a log4j.properties that writes zk.log
there; every JVM a test starts is ended by pid when the test ends.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node_process"))

JAVA_DIR = Path("/usr/share/java")
ZK_JAR = JAVA_DIR / "zookeeper.jar"
# What QuorumPeerMain needs at run time, by Debian's unversioned jar names.
_CLASSPATH_JARS = [
    "zookeeper.jar", "zookeeper-jute.jar", "slf4j-api.jar", "slf4j-log4j12.jar", "log4j-1.2.jar",
    "netty-handler.jar", "netty-common.jar", "netty-buffer.jar", "netty-transport.jar",
    "netty-codec.jar", "netty-resolver.jar", "netty-transport-native-epoll.jar",
    "netty-transport-native-unix-common.jar", "metrics-core.jar", "commons-cli.jar",
    "snappy-java.jar", "commons-io.jar",
]

LOG4J = """\
log4j.rootLogger=INFO, F
log4j.appender.F=org.apache.log4j.FileAppender
log4j.appender.F.File={log}
log4j.appender.F.layout=org.apache.log4j.PatternLayout
log4j.appender.F.layout.ConversionPattern=%d %p [%t] %c{{1}} - %m%n
"""


def zookeeper_available() -> bool:
    return ZK_JAR.exists() and shutil.which("java") is not None


def classpath() -> str:
    return ":".join(str(JAVA_DIR / j) for j in _CLASSPATH_JARS if (JAVA_DIR / j).exists())


class RealZooKeeper:
    """One QuorumPeerMain JVM on a zoo.cfg in `directory`."""

    def __init__(self, directory: Path, cfg_text: str, sid: int) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "myid").write_text(f"{sid}\n")
        self.cfg = self.dir / "zoo.cfg"
        self.cfg.write_text(cfg_text)
        self.log = self.dir / "zk.log"
        (self.dir / "log4j.properties").write_text(LOG4J.format(log=self.log))
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        out = open(self.dir / "stdout.txt", "ab")
        self.proc = subprocess.Popen(
            ["java", "-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
             f"-Dlog4j.configuration=file:{self.dir / 'log4j.properties'}",
             "-Dzookeeper.admin.enableServer=false",
             "-cp", classpath(), "org.apache.zookeeper.server.quorum.QuorumPeerMain", str(self.cfg)],
            cwd=self.dir, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        out.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(15)


@pytest.fixture
def real_zk():
    if not zookeeper_available():
        pytest.skip(f"{ZK_JAR} or java missing (Debian package zookeeper)")
    started: list[RealZooKeeper] = []

    def factory(directory: Path, cfg_text: str, sid: int) -> RealZooKeeper:
        zk = RealZooKeeper(directory, cfg_text, sid)
        started.append(zk)
        return zk

    yield factory
    for zk in started:
        zk.stop()
