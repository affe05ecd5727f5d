"""FleetRecorder and RecordSpec without servers: envelope messages in, bounded MCAP records out."""

from __future__ import annotations

import io
import uuid

import pytest
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from nav_msgs.msg import Odometry
from rclpy.serialization import serialize_message
from sensor_msgs.msg import LaserScan

from robot_platform.messaging.codec import Codec
from robot_platform.messaging.envelope import Envelope
from robot_platform.recording.errors import RecordSpecError
from robot_platform.recording.mcap_out import MESSAGE_OVERHEAD, RosMcapWriter
from robot_platform.recording.msgdefs import MessageDefinitions
from robot_platform.recording.recorder import MAX_SECONDS, FleetRecorder, RecordSpec

CODEC = Codec()
DEFS = MessageDefinitions()
SPEC = RecordSpec(("r1", "r2"), ("/odom", "/scan"), 10.0, 1_000_000)


def headers(type_name: str, msg_id: str | None = None) -> dict[str, str]:
    return Envelope(type_name=type_name, msg_id=msg_id or uuid.uuid4().hex, robot_id="r1", sent_ns=5).headers()


def odom_body(x: float) -> bytes:
    msg = Odometry()
    msg.header.frame_id = "odom"
    msg.pose.pose.position.x = x
    return CODEC.encode(msg)


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (RecordSpec((), ("/odom",), 1.0, 1), "robots"),
        (RecordSpec(("r1",), ("/odom/*",), 1.0, 1), "robots/topics"),
        (RecordSpec(("r1.>",), ("/odom",), 1.0, 1), "robots/topics"),
        (RecordSpec(("r1",), ("/odom",), MAX_SECONDS + 1, 1), "max_seconds"),
        (RecordSpec(("r1",), ("/odom",), 1.0, 0), "max_bytes"),
    ],
)
def test_spec_refuses_bad_arguments(spec: RecordSpec, field: str) -> None:
    with pytest.raises(RecordSpecError) as err:
        spec.check()
    assert err.value.field == field


def test_spec_subjects_are_the_bridge_telemetry_subjects() -> None:
    assert SPEC.check().subjects() == ["robots.r1.ros.odom", "robots.r1.ros.scan", "robots.r2.ros.odom",
                                       "robots.r2.ros.scan"]  # fmt: skip


def test_records_under_robot_namespace_and_counts_what_it_rejects() -> None:
    stream = io.BytesIO()
    writer = RosMcapWriter(stream, DEFS)
    rec = FleetRecorder(SPEC, writer, CODEC, serialize_message, clock_ns=lambda: 1_000)
    rec.on_message("robots.r1.ros.odom", headers("nav_msgs/msg/Odometry", "a"), odom_body(1.0))
    rec.on_message("robots.r1.ros.odom", headers("nav_msgs/msg/Odometry", "a"), odom_body(1.0))  # duplicate
    rec.on_message("robots.r2.ros.odom", headers("nav_msgs/msg/Odometry"), odom_body(2.0))
    scan = LaserScan(ranges=[float("inf"), 1.0])  # inf is a normal scan value: recorded, not refused
    rec.on_message("robots.r1.ros.scan", headers("sensor_msgs/msg/LaserScan"), CODEC.encode(scan))
    rec.on_message("robots.r1.ros.odom", None, odom_body(3.0))
    rec.on_message("robots.r1.ros.odom", headers("nope/msg/Nothing"), b"\x80")
    rec.on_message("robots.r1.ros.odom", headers("nav_msgs/msg/Odometry"), b"\x93\x01\x02\x03")
    rec.on_message("robots.r9.ros.odom", headers("nav_msgs/msg/Odometry"), odom_body(4.0))
    writer.finish()
    summary = rec.summary()
    assert summary["messages"] == 3 and summary["duplicates"] == 1 and not rec.done.is_set()
    assert summary["rejected"] == {"EnvelopeError": 1, "UnknownTypeError": 1, "MalformedPayloadError": 1,
                                   "RecordingError": 1}  # fmt: skip
    assert summary["silent"] == ["/robots/r2/scan"]
    reader = make_reader(io.BytesIO(stream.getvalue()), decoder_factories=[DecoderFactory()])
    got = {(ch.topic, m.header.frame_id) for _, ch, _, m in reader.iter_decoded_messages()}
    assert got == {("/robots/r1/odom", "odom"), ("/robots/r2/odom", "odom"), ("/robots/r1/scan", "")}


def test_byte_bound_ends_the_recording() -> None:
    one = len(serialize_message(CODEC.decode(Odometry, odom_body(0.0))))
    writer = RosMcapWriter(io.BytesIO(), DEFS, max_message_bytes=3 * (one + MESSAGE_OVERHEAD))
    rec = FleetRecorder(SPEC, writer, CODEC, serialize_message)
    for i in range(10):
        rec.on_message("robots.r1.ros.odom", headers("nav_msgs/msg/Odometry"), odom_body(float(i)))
    assert rec.done.is_set() and rec.stopped_by == "max_bytes" and writer.messages == 3


def test_alerts_recorded_next_to_telemetry_when_asked() -> None:
    from robot_platform_interfaces.msg import Alert

    spec = RecordSpec(("r1",), ("/odom",), 10.0, 1_000_000, alerts=True)
    assert spec.check().subjects() == ["robots.r1.ros.odom", "robots.r1.alerts"]
    stream = io.BytesIO()
    writer = RosMcapWriter(stream, DEFS)
    rec = FleetRecorder(spec, writer, CODEC, serialize_message)
    alert = Alert(robot_id="r1", code="SPEED_DROP", severity=Alert.SEVERITY_ERROR, message="check wheels")
    rec.on_message("robots.r1.alerts", headers("robot_platform_interfaces/msg/Alert"), CODEC.encode(alert))
    rec.on_message("robots.r1.ros.odom", headers("nav_msgs/msg/Odometry"), odom_body(1.0))
    writer.finish()
    assert rec.summary()["silent"] == [] and rec.summary()["rejected"] == {}
    reader = make_reader(io.BytesIO(stream.getvalue()), decoder_factories=[DecoderFactory()])
    got = {ch.topic: (sc.name, m) for sc, ch, _, m in reader.iter_decoded_messages()}
    name, decoded = got["/robots/r1/alerts"]
    assert name == "robot_platform_interfaces/msg/Alert" and decoded.code == "SPEED_DROP" and decoded.severity == 2
    assert not RecordSpec(("r1",), ("/odom",), 1.0, 1).check().alerts  # off unless asked


def test_size_argument_forms() -> None:
    from robot_platform.cli.record import parse_size

    assert [parse_size(t) for t in ("65536", "20K", "200M", "1.5G", "2gb")] == [
        65536, 20 * 1024, 200 * 1024**2, int(1.5 * 1024**3), 2 * 1024**3,
    ]  # fmt: skip
    for bad in ("", "M", "ten", "5T"):
        with pytest.raises(RecordSpecError):
            parse_size(bad)


def test_a_message_the_serializer_refuses_is_rejected_and_the_recording_goes_on() -> None:
    calls = []

    def picky(msg: object) -> bytes:
        calls.append(msg)
        if len(calls) == 1:
            raise TypeError("value out of range for the C type")
        return serialize_message(msg)

    writer = RosMcapWriter(io.BytesIO(), DEFS, max_message_bytes=1_000_000)
    rec = FleetRecorder(SPEC, writer, CODEC, picky)
    for i in range(3):
        rec.on_message("robots.r1.ros.odom", headers("nav_msgs/msg/Odometry"), odom_body(float(i)))
    assert rec.rejected == {"SerializeError": 1} and writer.messages == 2 and not rec.done.is_set()


class _FillingDisk(io.BytesIO):
    """A file whose disk is full after the first 4 KiB."""

    def write(self, data: bytes) -> int:  # type: ignore[override]
        if self.tell() + len(data) > 4096:
            raise OSError(28, "No space left on device")
        return super().write(data)


def test_a_write_error_ends_the_recording_with_its_reason() -> None:
    writer = RosMcapWriter(_FillingDisk(), DEFS, max_message_bytes=100_000_000)
    rec = FleetRecorder(SPEC, writer, CODEC, serialize_message)
    for i in range(5_000):  # until a chunk (1 MiB) is flushed to the full disk
        rec.on_message("robots.r1.ros.odom", headers("nav_msgs/msg/Odometry"), odom_body(float(i)))
        if rec.done.is_set():
            break
    assert rec.stopped_by == "write_error"


@pytest.mark.parametrize("text", ["inf", "1e400", "-inf", "nan", "", "12Q"])
def test_sizes_that_are_not_sizes_are_refused_by_name(text: str) -> None:
    from robot_platform.cli.record import parse_size

    with pytest.raises(RecordSpecError, match="--max-bytes"):
        parse_size(text)
