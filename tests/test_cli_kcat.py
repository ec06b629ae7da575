"""The kcat habits of ``bus consume`` (``-f``, ``-J``, ``-p``, ``-o``, ``-e``) and ``bus
produce`` (``-k``, ``-K``, ``-H``, ``-p``, ``-Z``, ``-J``): in process on memory (both
API paths, ``cli_url``), then as processes piped together on a real Kafka broker."""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest
from hypothesis import given
from test_cli import (  # fixtures and helpers of the CLI tests
    broker,
    bus_script,
    cli_url,
    feed,
    kafka_url,
    lines,
    read_all,
    url,
)

import bus
from bus._cli import main
from bus._cli_kcat import compile_format, from_json, to_json
from bus.testing import strategies

__all__ = ["broker", "cli_url", "kafka_url", "url"]


def _seed(b: bus.Bus, topic: str = "t", partitions: int = 2) -> None:
    """Three messages in partition 0 (offsets 0-2), two in partition 1 (0-1) if any."""
    b.create_topic(topic, partitions=partitions)
    with b.producer() as producer:
        for i in range(3):
            producer.send(topic, f"p0-{i}".encode(), key=b"k", partition=0, timestamp=1000 + i)
        for i in range(2 if partitions > 1 else 0):
            producer.send(topic, f"p1-{i}".encode(), partition=1, timestamp=2000 + i)


def _values(out: str) -> list[str]:
    return sorted(line.rsplit("value:", 1)[1] for line in lines(out))


# -- pure pieces ----------------------------------------------------------------------------


def test_format_tokens_and_escapes() -> None:
    message = bus.Message(
        "t", b"v", key=b"k", headers=(("a", b"1"), ("b", None)), partition=3, offset=7,
        timestamp=99,
    )  # fmt: skip
    fmt = compile_format(r"%t|%p|%o|%k|%s|%T|%h|%K|%S|%%\t\n")
    assert fmt(message) == "t|3|7|k|v|99|a=1,b=|1|1|%\t\n"


@pytest.mark.parametrize("spec", ["%x", "\\q", "ends in %", "ends in \\"])
def test_a_bad_format_exits_2_while_parsing(spec: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["consume", "t", "-f", spec]) == 2
    assert "argument --format:" in capsys.readouterr().err


def test_json_is_reversible_for_text_other_bytes_and_none() -> None:
    message = bus.Message(
        "t", b"\xff\x00", key=None, headers=(("h", b"ok"), ("n", None), ("b", b"\xfe")),
        partition=1, offset=5, timestamp=12,
    )  # fmt: skip
    data = json.loads(to_json(message))
    assert data == {
        "topic": "t",
        "partition": 1,
        "offset": 5,
        "timestamp": 12,
        "key": None,
        "value": {"base64": "/wA="},
        "headers": [["h", "ok"], ["n", None], ["b", {"base64": "/g=="}]],
    }
    record = from_json(to_json(message).encode(), 1)
    assert (record.key, record.value, record.headers, record.partition, record.timestamp) == (
        None,
        b"\xff\x00",
        (("h", b"ok"), ("n", None), ("b", b"\xfe")),
        1,
        12,
    )


@given(strategies.messages(partitions=8))
def test_json_gives_back_every_field_produce_sends(message: bus.Message) -> None:
    line = to_json(message)
    assert "\n" not in line  # one message, one line
    record = from_json(line.encode(), 1)
    assert (record.key, record.value, record.headers) == (
        message.key,
        message.value,
        tuple(message.headers or ()),
    )
    assert (record.partition, record.timestamp) == (message.partition, message.timestamp)


@pytest.mark.parametrize(
    "line",
    [
        b"not json",
        b"[1]",
        b'{"value": 3}',
        b'{"value": {"base64": "@@"}}',
        b'{"headers": [1]}',
        b'{"headers": [["h", 1]]}',
        b'{"partition": -1}',
        b'{"partition": true}',
        b'{"timestamp": -1}',
        b'{"timestamp": 9223372036854775808}',
        b'{"timestamp": 1.5}',
        b"\xff",
    ],
)
def test_a_bad_json_line_is_refused_naming_it(line: bytes) -> None:
    with pytest.raises(ValueError, match="line 4"):
        from_json(line, 4)


@pytest.mark.parametrize("spec", ["begin", "-", "@", "@x", "1.5", "--3"])
def test_a_bad_offset_exits_2_while_parsing(spec: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["consume", "t", f"--offset={spec}"]) == 2
    assert "argument --offset: must be beginning, end, stored" in capsys.readouterr().err


# -- consume on memory, both API paths ------------------------------------------------------


def test_consume_exit_at_end_from_beginning(
    cli_url: str, broker: bus.Bus, capsys: pytest.CaptureFixture[str]
) -> None:
    _seed(broker)
    assert main(["consume", "t", "--url", cli_url, "-o", "beginning", "-e"]) == 0
    assert _values(capsys.readouterr().out) == ["p0-0", "p0-1", "p0-2", "p1-0", "p1-1"]


def test_consume_exit_at_end_of_an_empty_topic_or_from_the_end(
    cli_url: str, broker: bus.Bus, capsys: pytest.CaptureFixture[str]
) -> None:
    broker.create_topic("empty", partitions=2)
    assert main(["consume", "empty", "--url", cli_url, "-e", "-o", "beginning"]) == 0
    _seed(broker)
    assert main(["consume", "t", "--url", cli_url, "-e", "-o", "end"]) == 0
    assert capsys.readouterr().out == ""


def test_consume_one_partition(
    cli_url: str, broker: bus.Bus, capsys: pytest.CaptureFixture[str]
) -> None:
    _seed(broker)
    assert main(["consume", "t", "--url", cli_url, "-p", "1", "-o", "beginning", "-e"]) == 0
    assert _values(capsys.readouterr().out) == ["p1-0", "p1-1"]


@pytest.mark.parametrize(
    "offset, values",
    [
        ("1", ["p0-1", "p0-2", "p1-1"]),
        ("-1", ["p0-2", "p1-1"]),
        ("-10", ["p0-0", "p0-1", "p0-2", "p1-0", "p1-1"]),
        ("@1001", ["p0-1", "p0-2", "p1-0", "p1-1"]),
        ("@2001", ["p1-1"]),
        ("@9999", []),
    ],
)
def test_consume_offsets(
    offset: str,
    values: list[str],
    cli_url: str,
    broker: bus.Bus,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _seed(broker)
    assert main(["consume", "t", "--url", cli_url, f"--offset={offset}", "-e"]) == 0
    assert _values(capsys.readouterr().out) == values


def test_consume_stored_resumes_the_group(
    cli_url: str, broker: bus.Bus, capsys: pytest.CaptureFixture[str]
) -> None:
    _seed(broker, partitions=1)
    group = ["consume", "t", "--url", cli_url, "--group", "g"]
    assert main([*group, "-o", "beginning", "-c", "2"]) == 0
    assert main([*group, "-o", "stored", "-e"]) == 0
    assert _values(capsys.readouterr().out) == ["p0-0", "p0-1", "p0-2"]


@pytest.mark.parametrize(
    "argv, says",
    [
        (["-o", "stored"], "needs --group"),
        (["--group", "g", "-o", "-2"], "with --group, -o/--offset takes"),
        (["--group", "g", "-p", "0"], "without a group"),
    ],
)
def test_consume_offset_group_mismatch_exits_2(
    argv: list[str], says: str, url: str, broker: bus.Bus, capsys: pytest.CaptureFixture[str]
) -> None:
    _seed(broker)
    assert main(["consume", "t", "--url", url, *argv]) == 2
    assert says in capsys.readouterr().err


def test_consume_format_and_json(
    cli_url: str, broker: bus.Bus, capsys: pytest.CaptureFixture[str]
) -> None:
    broker.create_topic("f", partitions=1)
    with broker.producer() as producer:
        producer.send("f", b"v", key=b"k", headers=[("h", b"1")], timestamp=5)
        producer.send("f", None, key=b"\xff", timestamp=6)
    base = ["consume", "f", "--url", cli_url, "-o", "beginning", "-e"]
    assert main([*base, "-f", r"%t/%p/%o %k=%s @%T [%h]\n"]) == 0
    assert capsys.readouterr().out == "f/0/0 k=v @5 [h=1]\nf/0/1 \ufffd= @6 []\n"
    assert main([*base, "-J"]) == 0
    assert [json.loads(line) for line in lines(capsys.readouterr().out)] == [
        {"topic": "f", "partition": 0, "offset": 0, "timestamp": 5, "key": "k", "value": "v",
         "headers": [["h", "1"]]},
        {"topic": "f", "partition": 0, "offset": 1, "timestamp": 6, "key": {"base64": "/w=="},
         "value": None, "headers": []},
    ]  # fmt: skip


# -- produce on memory, both API paths ------------------------------------------------------


def test_produce_short_forms_key_headers_partition(
    cli_url: str, broker: bus.Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker.create_topic("p", partitions=3)
    feed(monkeypatch, b"one\ntwo\n")
    assert main(["produce", "p", "--url", cli_url, "-k", "K", "-H", "a=1", "-p", "2"]) == 0
    got = read_all(broker, "p", 2)
    assert [(m.key, m.value, m.partition, m.headers) for m in got] == [
        (b"K", b"one", 2, (("a", b"1"),)),
        (b"K", b"two", 2, (("a", b"1"),)),
    ]


def test_produce_null_with_and_without_a_separator(
    cli_url: str, broker: bus.Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker.create_topic("z", partitions=1)
    feed(monkeypatch, b"a:\n:b\nc:d\n")
    assert main(["produce", "z", "--url", cli_url, "-K", ":", "-Z"]) == 0
    feed(monkeypatch, b"\nx\n")
    assert main(["produce", "z", "--url", cli_url, "-Z"]) == 0
    got = read_all(broker, "z", 5)
    assert [(m.key, m.value) for m in got] == [
        (b"a", None),
        (None, b"b"),
        (b"c", b"d"),
        (None, None),
        (None, b"x"),
    ]


def test_produce_json_reads_what_consume_json_writes(
    cli_url: str,
    broker: bus.Bus,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _seed(broker, "src", partitions=2)
    with broker.producer() as producer:
        producer.send("src", b"\xff", key=None, headers=[("h", b"\xfe"), ("n", None)], partition=1)
    assert main(["consume", "src", "--url", cli_url, "-J", "-o", "beginning", "-e"]) == 0
    dump = capsys.readouterr().out
    broker.create_topic("dst", partitions=2)
    feed(monkeypatch, dump.encode())
    assert main(["produce", "dst", "--url", cli_url, "-J", "-H", "x=y"]) == 0
    src = read_all(broker, "src", 6)
    dst = read_all(broker, "dst", 6)

    def shape(m: bus.Message) -> tuple[object, ...]:
        return (m.partition, m.offset, m.timestamp, m.key, m.value, m.headers)

    assert sorted(map(shape, dst), key=repr) == sorted(
        (
            (m.partition, m.offset, m.timestamp, m.key, m.value, (*m.headers, ("x", b"y")))
            for m in src
        ),
        key=repr,
    )


def test_produce_a_bad_json_line_exits_2(
    url: str, broker: bus.Bus, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    broker.create_topic("j")
    feed(monkeypatch, b'{"value": "ok"}\nnope\n')
    assert main(["produce", "j", "--url", url, "-J"]) == 2
    assert "line 2 is not JSON" in capsys.readouterr().err
    assert [m.value for m in read_all(broker, "j", 1)] == [b"ok"]


# -- on a real Kafka broker, as processes ---------------------------------------------------


def test_consume_json_piped_into_produce_json_keeps_everything_on_kafka(kafka_url: str) -> None:
    src, dst = (f"cli-{name}-{uuid.uuid4().hex[:8]}" for name in ("src", "dst"))
    blocking = kafka_url.replace("aiokafka://", "kafka://")  # the same broker, to set up
    with bus.connect(blocking) as b:
        b.create_topic(src, partitions=3)
        b.create_topic(dst, partitions=3)
    with bus.connect(blocking) as b, b.producer() as producer:
        for i in range(9):
            key = None if i == 4 else f"k{i}".encode()
            value = None if i == 5 else (b"\xff\xfe" if i == 6 else f"v{i}".encode())
            producer.send(
                src,
                value,
                key=key,
                headers=[("i", str(i).encode())],
                partition=i % 3,
                timestamp=1_700_000_000_000 + i,  # kept by the copy, not the copy's time
            )
    script = bus_script()
    consume = subprocess.Popen(
        [script, "consume", src, "--url", kafka_url, "-J", "-e", "-o", "beginning"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    produce = subprocess.run(
        [script, "produce", dst, "--url", kafka_url, "-J"],
        stdin=consume.stdout,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert consume.stdout is not None
    consume.stdout.close()
    assert consume.wait(timeout=120) == 0, consume.stderr.read() if consume.stderr else ""
    assert produce.returncode == 0, produce.stderr
    assert len(lines(produce.stdout.decode())) == 9
    copied = subprocess.run(
        [script, "consume", dst, "--url", kafka_url, "-J", "-e", "-o", "beginning"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )

    def shape(line: str) -> tuple[object, ...]:
        data = json.loads(line)
        fields = ("partition", "offset", "timestamp", "key", "value", "headers")
        return tuple(data[name] for name in fields)

    got = sorted(map(shape, lines(copied.stdout)), key=repr)
    assert len(got) == 9
    with bus.connect(blocking) as b:
        want = sorted((shape(to_json(m)) for m in read_all(b, src, 9)), key=repr)
    assert got == want


# -- topics describe, groups list/describe --------------------------------------------------


def test_topics_describe_shows_watermarks(
    cli_url: str, broker: bus.Bus, capsys: pytest.CaptureFixture[str]
) -> None:
    _seed(broker)
    assert main(["topics", "describe", "t", "--url", cli_url]) == 0
    assert lines(capsys.readouterr().out) == [
        "Topic: t  Partitions: 2",
        "PARTITION  LEADER  REPLICAS  ISR  LOW-WATERMARK  HIGH-WATERMARK  MESSAGES",
        "0          -       -         -    0              3               3",
        "1          -       -         -    0              2               2",
    ]
    assert main(["topics", "describe", "t", "--url", cli_url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["partitions"][1] == {
        "partition": 1,
        "leader": None,
        "replicas": [],
        "in_sync": [],
        "low": 0,
        "high": 2,
        "messages": 2,
    }
    assert main(["topics", "describe", "nope", "--url", cli_url]) == 1


def test_topics_describe_on_a_backend_that_cannot_describe_topics_shows_the_watermarks(
    cli_url: str,
    broker: bus.Bus,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from backends.memory._backend import MemoryBackend
    from bus.spi import Backend

    monkeypatch.setattr(MemoryBackend, "describe_topic", Backend.describe_topic)
    with pytest.raises(bus.UnsupportedError):
        broker.describe_topic("t")  # the SPI's default: the CLI reads the watermarks
    _seed(broker)
    assert main(["topics", "describe", "t", "--url", cli_url]) == 0
    assert [row.split() for row in lines(capsys.readouterr().out)[2:]] == [
        ["0", "-", "-", "-", "0", "3", "3"],
        ["1", "-", "-", "-", "0", "2", "2"],
    ]


def test_groups_list_and_describe_show_the_lag(
    url: str, broker: bus.Bus, capsys: pytest.CaptureFixture[str]
) -> None:
    _seed(broker)
    assert main(["consume", "t", "--url", url, "--group", "g", "-o", "beginning", "-c", "5"]) == 0
    with broker.producer() as producer:
        producer.send("t", b"late", partition=0)
    capsys.readouterr()
    assert main(["groups", "list", "--url", url]) == 0
    assert lines(capsys.readouterr().out) == ["g"]
    assert main(["groups", "list", "--url", url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == ["g"]
    assert main(["groups", "describe", "g", "--url", url]) == 0
    out = lines(capsys.readouterr().out)
    assert out[0].split() == [
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "CONSUMER-ID",
        "HOST",
        "CLIENT-ID",
    ]
    assert [row.split() for row in out[1:3]] == [
        ["t", "0", "3", "4", "1", "-", "-", "-"],
        ["t", "1", "2", "2", "0", "-", "-", "-"],
    ]
    assert out[-1] == "Group g is empty with 0 member(s); total lag 1."
    assert main(["groups", "describe", "g", "--url", url, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["state"], data["total_lag"], data["members"]) == ("empty", 1, [])
    assert main(["groups", "describe", "nobody", "--url", url]) == 1


def test_groups_describe_shows_the_lag_of_a_group_that_read_half_on_kafka(
    kafka_url: str,
) -> None:
    topic = f"cli-lag-{uuid.uuid4().hex[:8]}"
    group = f"g-{topic}"
    blocking = kafka_url.replace("aiokafka://", "kafka://")
    with bus.connect(blocking) as b:
        b.create_topic(topic, partitions=2)
    with bus.connect(blocking) as b, b.producer() as producer:
        for i in range(8):
            producer.send(topic, f"v{i}".encode(), partition=0)
    script = bus_script()
    half = ["-o", "beginning", "-c", "4", "--timeout", "60"]
    read = subprocess.run(
        [script, "consume", topic, "--url", kafka_url, "--group", group, *half],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert read.returncode == 0, read.stderr
    assert len(lines(read.stdout)) == 4
    described = subprocess.run(
        [script, "groups", "describe", group, "--url", kafka_url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert described.returncode == 0, described.stderr
    out = lines(described.stdout)
    rows = {tuple(row.split()[:5]) for row in out[1:] if row.startswith(topic)}
    assert (topic, "0", "4", "8", "4") in rows
    assert out[-1].startswith(f"Group {group} is ")
    assert out[-1].endswith("total lag 4.")
    listed = subprocess.run(
        [script, "groups", "list", "--url", kafka_url],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert group in lines(listed.stdout)


def test_topics_describe_shows_leaders_replicas_and_watermarks_on_kafka(kafka_url: str) -> None:
    topic = f"cli-describe-{uuid.uuid4().hex[:8]}"
    blocking = kafka_url.replace("aiokafka://", "kafka://")
    with bus.connect(blocking) as b:
        b.create_topic(topic, partitions=2)
        with b.producer() as producer:
            for i in range(3):
                producer.send(topic, f"v{i}".encode(), partition=1)
    script = bus_script()
    shown = subprocess.run(
        [script, "topics", "describe", topic, "--url", kafka_url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    out = lines(shown.stdout)
    assert out[0] == f"Topic: {topic}  Partitions: 2"
    assert out[1].split() == [
        "PARTITION",
        "LEADER",
        "REPLICAS",
        "ISR",
        "LOW-WATERMARK",
        "HIGH-WATERMARK",
        "MESSAGES",
    ]
    rows = [row.split() for row in out[2:]]
    assert [(r[0], *r[4:]) for r in rows] == [("0", "0", "0", "0"), ("1", "0", "3", "3")]
    for _, leader, replicas, in_sync, *_ in rows:
        assert leader.isdigit(), rows  # one broker: it leads, holds and is in sync
        assert replicas == in_sync == leader, rows
    as_json = subprocess.run(
        [script, "topics", "describe", topic, "--url", kafka_url, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    data = json.loads(as_json.stdout)
    assert [(p["partition"], p["high"]) for p in data["partitions"]] == [(0, 0), (1, 3)]
    assert all(p["replicas"] == p["in_sync"] == [p["leader"]] for p in data["partitions"])
