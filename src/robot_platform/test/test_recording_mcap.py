"""RosMcapWriter and MessageDefinitions: files that the mcap library and rosbags both read back."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from nav_msgs.msg import Odometry
from rclpy.serialization import serialize_message
from rosbags.highlevel import AnyReader
from sensor_msgs.msg import LaserScan
from std_msgs.msg import Bool, String

from robot_platform.messaging.errors import UnknownTypeError
from robot_platform.ops.actions import RollingBuffer, build_capture
from robot_platform.ops.errors import ActionError
from robot_platform.recording.errors import RecordingFullError, TopicTypeError
from robot_platform.recording.mcap_out import MESSAGE_OVERHEAD, RosMcapWriter
from robot_platform.recording.msgdefs import MessageDefinitions

DEFS = MessageDefinitions()


def odom(i: int) -> bytes:
    msg = Odometry()
    msg.header.frame_id = "odom"
    msg.header.stamp.sec = 100 + i
    msg.child_frame_id = "base_link"
    msg.pose.pose.position.x = float(i)
    return bytes(serialize_message(msg))


def scan() -> bytes:
    return bytes(serialize_message(LaserScan(ranges=[1.0, 2.5, 3.0], angle_max=3.14)))


def test_schema_text_is_the_installed_msg_with_its_dependencies() -> None:
    text = DEFS.text("nav_msgs/Odometry")
    assert text.startswith("std_msgs/Header header\n")
    assert "\nMSG: std_msgs/Header\n" in text and "\nMSG: geometry_msgs/PoseWithCovariance\n" in text
    assert "\nMSG: builtin_interfaces/Time\n" in text
    with pytest.raises(UnknownTypeError):
        DEFS.text("no_such_pkg/msg/Nothing")
    with pytest.raises(UnknownTypeError):
        DEFS.text("../../etc/passwd")


def test_own_prefix_and_broken_msg_files_give_typed_errors(tmp_path: Path) -> None:
    msg_dir = tmp_path / "share" / "site_msgs" / "msg"
    msg_dir.mkdir(parents=True)
    (msg_dir / "Mark.msg").write_text("# a site's own type\nstring label\nsite_msgs/Point[] points\n")
    (msg_dir / "Point.msg").write_text("float64 x\nfloat64 y\n")
    (msg_dir / "Broken.msg").write_text("uint8[ broken\n")
    defs = MessageDefinitions(ament_prefix_path=str(tmp_path))
    text = defs.text("site_msgs/msg/Mark")
    assert text.startswith("string label\n") and "\nMSG: site_msgs/Point\nfloat64 x\nfloat64 y" in text
    with pytest.raises(UnknownTypeError, match="does not parse"):
        defs.text("site_msgs/msg/Broken")


def write_sample(path: Path) -> None:
    with path.open("wb") as f:
        writer = RosMcapWriter(f, DEFS, metadata={"robot_id": "r1"})
        for i in range(5):
            writer.add("/odom", "nav_msgs/msg/Odometry", odom(i), 1_000_000_000 + i * 50_000_000)
        writer.add("/scan", "sensor_msgs/msg/LaserScan", scan(), 1_100_000_000)
        writer.finish()


def test_file_reads_back_with_mcap_ros2_decoder(tmp_path: Path) -> None:
    path = tmp_path / "sample.mcap"
    write_sample(path)
    with path.open("rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        assert reader.get_header().profile == "ros2"
        decoded = [(ch.topic, sc.name, msg) for sc, ch, _, msg in reader.iter_decoded_messages()]
    odoms = [m for topic, _, m in decoded if topic == "/odom"]
    assert [m.pose.pose.position.x for m in odoms] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert odoms[0].header.frame_id == "odom" and odoms[0].child_frame_id == "base_link"
    scans = [m for topic, _, m in decoded if topic == "/scan"]
    assert len(scans) == 1 and list(scans[0].ranges) == [1.0, 2.5, 3.0]


def test_file_reads_back_with_rosbags(tmp_path: Path) -> None:
    path = tmp_path / "sample.mcap"
    write_sample(path)
    with AnyReader([path]) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
        types = {c.topic: c.msgtype for c in reader.connections}
        first = next(reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages() if c.topic == "/odom")
    assert counts == {"/odom": 5, "/scan": 1}
    assert types == {"/odom": "nav_msgs/msg/Odometry", "/scan": "sensor_msgs/msg/LaserScan"}
    assert first.header.frame_id == "odom" and first.header.stamp.sec == 100


def test_writer_bounds_bytes_and_keeps_one_type_per_topic() -> None:
    writer = RosMcapWriter(io.BytesIO(), DEFS, max_message_bytes=2 * (len(odom(0)) + MESSAGE_OVERHEAD))
    writer.add("/odom", "nav_msgs/msg/Odometry", odom(0), 1)
    writer.add("/odom", "nav_msgs/msg/Odometry", odom(1), 2)
    with pytest.raises(RecordingFullError):
        writer.add("/odom", "nav_msgs/msg/Odometry", odom(2), 3)
    assert writer.messages == 2 and writer.message_bytes == 2 * len(odom(0))
    assert writer.record_bytes == 2 * (len(odom(0)) + MESSAGE_OVERHEAD)
    writer.finish()
    unbounded = RosMcapWriter(io.BytesIO(), DEFS)
    unbounded.add("/odom", "nav_msgs/msg/Odometry", odom(0), 1)
    with pytest.raises(TopicTypeError):
        unbounded.add("/odom", "std_msgs/msg/String", b"\x00", 2)


def test_capture_is_mcap_and_refuses_bad_requests() -> None:
    buf = RollingBuffer(window_s=10.0, max_bytes=1_000_000)
    for i in range(20):
        buf.add("/chatter", bytes(serialize_message(String(data=f"hello {i}"))), now=1000.0 + i * 0.1)
    types = {"/chatter": "std_msgs/msg/String"}
    now = time.time()
    for i in range(20):
        buf.add("/chatter", bytes(serialize_message(String(data=f"now {i}"))), now=now - 2.0 + i * 0.1)
    result = build_capture("r1", buf, types, ["/chatter", "/chatter"], 3.0, 1_000_000, DEFS)
    assert result["format"] == "mcap" and result["messages"] == 20
    reader = make_reader(io.BytesIO(result["file"]), decoder_factories=[DecoderFactory()])
    texts = [m.data for _, _, _, m in reader.iter_decoded_messages()]
    assert texts == [f"now {i}" for i in range(20)]
    with pytest.raises(ActionError, match="not buffered"):
        build_capture("r1", buf, types, ["/nope"], 1.0, 1_000_000, DEFS)
    with pytest.raises(ActionError, match="'seconds'"):
        build_capture("r1", buf, types, ["/chatter"], 60.0, 1_000_000, DEFS)
    with pytest.raises(ActionError, match="limit"):
        build_capture("r1", buf, types, ["/chatter"], 3.0, 100, DEFS)


@pytest.mark.parametrize("topics", [[f"/t{i}" for i in range(10_000)], ["/x" * 5000], [""], "/chatter", [1]])
def test_capture_topic_lists_are_bounded(topics: object) -> None:
    """A request naming 10,000 topics or one huge name is refused in a short message (not echoed back)."""
    buf = RollingBuffer(window_s=10.0, max_bytes=1_000_000)
    with pytest.raises(ActionError, match="1-64 topic names") as refused:
        build_capture("r1", buf, {"/chatter": "std_msgs/msg/String"}, topics, 1.0, 1_000_000, DEFS)
    assert len(str(refused.value)) < 200


def test_unknown_capture_topics_are_named_briefly_and_printably() -> None:
    buf = RollingBuffer(window_s=10.0, max_bytes=1_000_000)
    topics = [f"/evil\n{i}" for i in range(40)]
    with pytest.raises(ActionError, match="and 35 more") as refused:
        build_capture("r1", buf, {"/chatter": "std_msgs/msg/String"}, topics, 1.0, 1_000_000, DEFS)
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 300


def test_a_flood_of_tiny_messages_cannot_grow_the_file_past_the_bound() -> None:
    """Each message costs MESSAGE_OVERHEAD bytes of record and index besides its payload: counted in the
    bound, the file stays near ``max_message_bytes`` (before: 5-byte messages made it ~4 times larger)."""
    stream = io.BytesIO()
    bound = 64 * 1024
    writer = RosMcapWriter(stream, DEFS, max_message_bytes=bound)
    tiny = serialize_message(Bool(data=True))
    with pytest.raises(RecordingFullError):
        for i in range(100_000):
            writer.add("/flag", "std_msgs/msg/Bool", tiny, i + 1)
    writer.finish()
    assert writer.messages == bound // (len(tiny) + MESSAGE_OVERHEAD)
    assert len(stream.getvalue()) < bound + 16 * 1024  # schemas, chunk and summary records on top


def test_a_huge_message_of_the_wrong_type_is_refused_not_taken_as_full() -> None:
    """Before: the size was checked first, so one big message of another type ended the recording."""
    writer = RosMcapWriter(io.BytesIO(), DEFS, max_message_bytes=1024)
    writer.add("/flag", "std_msgs/msg/Bool", serialize_message(Bool(data=True)), 1)
    with pytest.raises(TopicTypeError):
        writer.add("/flag", "std_msgs/msg/String", serialize_message(String(data="x" * 100_000)), 2)
    writer.add("/flag", "std_msgs/msg/Bool", serialize_message(Bool(data=False)), 3)
    assert writer.messages == 2
