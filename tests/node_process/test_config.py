"""zoo.cfg parsing: real-ZooKeeper files work unchanged, bad ones name PATH:LINE."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.config import (
    ALL_FOUR_LETTER_WORDS, ConfigError, LearnerType, parse_config, parse_config_text, parse_server_line,
)
from harness import REPO

# As a ZooKeeper 3.8 operator would write it (zoo_sample.cfg plus the usual extras).
REAL_ZK_CFG = """\
# The number of milliseconds of each tick
tickTime=2000
# The number of ticks that the initial
# synchronization phase can take
initLimit=10
syncLimit=5
dataDir={data}
dataLogDir={data}/txlog
clientPort=2181
#maxClientCnxns=60
autopurge.snapRetainCount=3
autopurge.purgeInterval=1
metricsProvider.className=org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider
metricsProvider.httpPort=7000
admin.enableServer=false
standaloneEnabled=false
4lw.commands.whitelist=srvr, mntr, ruok
reconfigEnabled=false
server.1=zk1.example.com:2888:3888
server.2=zk2.example.com:2888:3888;2181
server.3 = zk3.example.com:2888:3888:participant;0.0.0.0:2181
server.4=zk4.example.com:2888:3888:observer
"""


def write(tmp_path: Path, text: str, myid: str | None = "1") -> Path:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    if myid is not None:
        (data / "myid").write_text(myid + "\n")
    cfg = tmp_path / "zoo.cfg"
    cfg.write_text(text.format(data=data))
    return cfg


def test_real_zookeeper_cfg_parses_unchanged(tmp_path):
    cfg = parse_config(write(tmp_path, REAL_ZK_CFG, myid="2"))
    assert cfg.sid == 2
    assert (cfg.tick_time, cfg.init_limit, cfg.sync_limit) == (2000, 10, 5)
    assert cfg.data_log_dir == tmp_path / "data" / "txlog"
    assert cfg.client_address == ("0.0.0.0", 2181)
    assert cfg.four_letter_whitelist == frozenset({"srvr", "mntr", "ruok"})
    assert cfg.participants == (1, 2, 3) and cfg.observers == (4,)
    assert cfg.server(3).client_host == "0.0.0.0" and cfg.server(3).client_port == 2181
    assert cfg.server(2).client_host is None and cfg.server(2).client_port == 2181
    ignored = {k.key: k.line for k in cfg.ignored_keys}
    assert ignored == {
        "autopurge.snapRetainCount": 11, "autopurge.purgeInterval": 12,
        "metricsProvider.className": 13, "metricsProvider.httpPort": 14,
        "admin.enableServer": 15, "standaloneEnabled": 16, "reconfigEnabled": 18,
    }
    # defaults of our own keys
    assert (cfg.protocol, cfg.txn_interval_ms, cfg.finalize_wait, cfg.log_notifications) == ("3.8", 100, 200, True)
    assert cfg.cnx_timeout_ms == 5000 and cfg.handshake_timeout_ms == 10000


def test_defaults_and_own_keys(tmp_path):
    text = ("initLimit=5\nsyncLimit=2\ndataDir={data}\nserver.1=127.0.0.1:1:2\n"
            "fle.protocol=3.4\nfle.minNotificationInterval=50\nfle.maxNotificationInterval=800\n"
            "fle.finalizeWait=20\nfle.logNotifications=false\ntxnIntervalMs=0\nquorumCnxnTimeoutMs=700\n"
            "4lw.commands.whitelist=*\n")
    cfg = parse_config(write(tmp_path, text))
    assert cfg.tick_time == 3000  # ZooKeeper's code default
    assert cfg.four_letter_whitelist == ALL_FOUR_LETTER_WORDS
    assert cfg.client_address is None
    assert (cfg.protocol, cfg.min_notification_interval, cfg.max_notification_interval) == ("3.4", 50, 800)
    assert (cfg.finalize_wait, cfg.log_notifications, cfg.txn_interval_ms) == (20, False, 0)
    assert cfg.handshake_timeout_ms == 700


def test_default_whitelist_is_srvr_only(tmp_path):
    cfg = parse_config(write(tmp_path, "initLimit=5\nsyncLimit=2\ndataDir={data}\nserver.1=h:1:2\n"))
    assert cfg.four_letter_whitelist == frozenset({"srvr"})


@pytest.mark.parametrize("value, expect", [
    ("127.0.0.1:2888:3888", ("127.0.0.1", 2888, 3888, LearnerType.PARTICIPANT, None, None)),
    ("h:2888:3888:observer", ("h", 2888, 3888, LearnerType.OBSERVER, None, None)),
    ("h:2888:3888:OBSERVER;2181", ("h", 2888, 3888, LearnerType.OBSERVER, None, 2181)),
    ("h:2888:3888;10.0.0.1:2181", ("h", 2888, 3888, LearnerType.PARTICIPANT, "10.0.0.1", 2181)),
    ("[::1]:2888:3888:participant", ("::1", 2888, 3888, LearnerType.PARTICIPANT, None, None)),
])
def test_server_line_forms(value, expect):
    s = parse_server_line(7, value)
    assert (s.host, s.quorum_port, s.election_port, s.learner_type, s.client_host, s.client_port) == expect


BASE = "tickTime=200\ninitLimit=10\nsyncLimit=5\ndataDir={data}\nserver.1=127.0.0.1:2888:3888\n"


@pytest.mark.parametrize("text, line, reason", [
    (BASE + "tickTime=fast\n", 6, "tickTime: expected an integer, got 'fast'"),
    (BASE + "server.2=127.0.0.1:2888\n", 6, "server.2: expected host:quorumPort:electionPort"),
    (BASE + "server.2=127.0.0.1:2888:2888\n", 6, "quorum and election ports must differ"),
    (BASE + "server.2=127.0.0.1:2888:70000\n", 6, "port 70000 is out of range"),
    (BASE + "server.2=127.0.0.1:2888:3889:witness\n", 6, "unrecognised peer type 'witness'"),
    (BASE + "server.x=127.0.0.1:2888:3889\n", 6, "server.x: expected an integer"),
    (BASE + "server.2=a:1:2|b:1:2\n", 6, "multiple addresses"),
    (BASE + "electionAlg=1\n", 6, "only 3 (FastLeaderElection)"),
    (BASE + "fle.protocol=3.5\n", 6, "fle.protocol: expected 3.8 or 3.4"),
    (BASE + "fle.logNotifications=maybe\n", 6, "expected true or false"),
    (BASE + "4lw.commands.whitelist=srvr,oops\n", 6, "unknown command(s) oops"),
    (BASE + "justakey\n", 6, "expected key=value"),
    (BASE + "# ok\n\nserver.2=h:1:2\ngroup.1=1:2\ngroup.2=2\n", 10, "server 2 is already in group.1"),
    (BASE + "server.2=h:1:2\ngroup.1=1\n", 6, "server.2: participant is in no group.G"),
    (BASE + "weight.1=-1\n", 6, "must be >= 0"),
])
def test_bad_config_names_path_and_line(tmp_path, text, line, reason):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as ei:
        parse_config(path)
    msg = str(ei.value)
    assert msg.startswith(f"{path}:{line}: "), msg
    assert reason in msg


@pytest.mark.parametrize("text, myid, reason", [
    ("tickTime=200\nsyncLimit=5\ndataDir={data}\nserver.1=h:1:2\n", "1", "initLimit is required"),
    ("tickTime=200\ninitLimit=5\nsyncLimit=5\nserver.1=h:1:2\n", "1", "dataDir is required"),
    ("initLimit=5\nsyncLimit=5\ndataDir={data}\n", "1", "no server.N lines"),
    (BASE, "9", "myid 9 has no server.9 line"),
    (BASE.replace("3888", "3888:observer"), "1", "no participant"),
])
def test_missing_things_name_the_file(tmp_path, text, myid, reason):
    path = write(tmp_path, text, myid=myid)
    with pytest.raises(ConfigError) as ei:
        parse_config(path)
    assert str(ei.value) == f"{path}: {reason}" or str(ei.value).startswith(f"{path}: {reason}")


def test_bad_myid_names_the_myid_file(tmp_path):
    path = write(tmp_path, BASE, myid="one")
    with pytest.raises(ConfigError) as ei:
        parse_config(path)
    assert str(ei.value) == f"{tmp_path / 'data' / 'myid'}:1: expected a server id (integer), got 'one'"
    (tmp_path / "data" / "myid").unlink()
    with pytest.raises(ConfigError, match="myid file is missing"):
        parse_config(path)


def test_garbage_bytes_config(tmp_path):
    path = tmp_path / "zoo.cfg"
    path.write_bytes(b"tickTime=200\n\xff\xfe\x00garbage\n")
    with pytest.raises(ConfigError) as ei:
        parse_config(path)
    assert str(ei.value).startswith(f"{path}:2: not UTF-8")


def test_weights_without_groups_mean_one_weighted_group():
    cfg = parse_config_text(BASE.format(data="/tmp/x") + "server.2=h:5:6\nserver.3=h:7:8\nweight.3=0\n", sid=1)
    assert cfg.groups == ((1, (1, 2, 3)),) and cfg.weights == ((3, 0),)
    v = cfg.make_verifier()
    assert v.weight(3) == 0 and v.contains_quorum({1, 2}) and not v.contains_quorum({1, 3})


def test_peer_type_disagreeing_with_server_list_follows_the_list(tmp_path):
    cfg = parse_config_text(BASE.format(data=tmp_path) + "server.2=h:5:6:observer\npeerType=observer\n", sid=1)
    assert cfg.peer_type is LearnerType.PARTICIPANT
    assert [k.key for k in cfg.ignored_keys] == ["peerType"]


def test_continuation_and_colon_separator():
    cfg = parse_config_text("initLimit: 5\nsyncLimit 2\ndataDir=/tmp/x\nserver.1=127.0.0.1:\\\n   1:2\n", sid=1)
    assert (cfg.init_limit, cfg.sync_limit) == (5, 2)
    assert cfg.me.quorum_port == 1 and cfg.me.election_port == 2


def _run_node(cfg: Path, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "node", "--config", str(cfg), "--parent-pid", str(os.getpid())],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_process_exits_2_naming_path_and_line(tmp_path):
    path = write(tmp_path, BASE + "syncLimit=soon\n")
    r = _run_node(path)
    assert r.returncode == 2
    assert f"{path}:6: syncLimit: expected an integer, got 'soon'" in r.stderr
    assert "Traceback" not in r.stderr


def test_process_exits_2_on_missing_config(tmp_path):
    r = _run_node(tmp_path / "nope.cfg")
    assert r.returncode == 2 and "nope.cfg: config file not found" in r.stderr


def test_process_exits_3_when_a_port_is_taken(tmp_path):
    from chaos.ports import reserve_ports
    with reserve_ports(3) as res:
        q, e, c = res.ports
        blocker = socket.socket()
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind(("127.0.0.1", c))
        blocker.listen()
        try:
            path = write(tmp_path, f"tickTime=200\ninitLimit=10\nsyncLimit=5\ndataDir={{data}}\nclientPort={c}\n"
                                   f"clientPortAddress=127.0.0.1\nserver.1=127.0.0.1:{q}:{e}\n")
            r = _run_node(path)
        finally:
            blocker.close()
    assert r.returncode == 3, r.stderr
    assert f"cannot bind client port 127.0.0.1:{c}" in r.stderr


def test_process_exits_3_on_a_corrupt_epoch_file(tmp_path):
    from chaos.ports import reserve_ports
    with reserve_ports(3) as res:
        q, e, c = res.ports
        path = write(tmp_path, f"tickTime=200\ninitLimit=10\nsyncLimit=5\ndataDir={{data}}\nclientPort={c}\n"
                               f"clientPortAddress=127.0.0.1\nserver.1=127.0.0.1:{q}:{e}\n")
        v2 = tmp_path / "data" / "version-2"
        v2.mkdir()
        (v2 / "currentEpoch").write_text("twelve")
        r = _run_node(path)
    assert r.returncode == 3, r.stderr
    assert "currentEpoch" in r.stderr and "Traceback" not in r.stderr


_LINE = st.one_of(
    st.text(max_size=40),
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(
        ["tickTime", "initLimit", "syncLimit", "dataDir", "server.1", "server.2", "group.1", "weight.2",
         "clientPort", "electionAlg", "4lw.commands.whitelist", "peerType", "fle.protocol",
         "fle.finalizeWait", "fle.logNotifications", "cnxTimeout"]), st.text(max_size=30)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_LINE, max_size=12))
def test_any_text_parses_or_raises_config_error(lines):
    """The h11 property: input either parses or fails with the one error type."""
    text = "\n".join(lines)
    try:
        parse_config_text(text, "fuzz.cfg", sid=1)
    except ConfigError as e:
        assert str(e).startswith("fuzz.cfg")
