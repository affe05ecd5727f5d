"""Codec: ROS message <-> dict <-> msgpack, validation errors, type loading and hashes (no ROS graph)."""

from __future__ import annotations

import math
from typing import Any

import msgpack
import numpy as np
import pytest
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import KeyValue
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import FloatingPointRange, ParameterDescriptor
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image, Imu, LaserScan
from std_msgs.msg import Byte, ByteMultiArray, Char, Float64MultiArray, Int8, UInt64
from type_description_interfaces.msg import FieldType
from unique_identifier_msgs.msg import UUID

from robot_platform.exceptions import RobotPlatformError
from robot_platform.messaging.codec import Codec, pack, unpack
from robot_platform.messaging.errors import (
    BridgeError,
    FieldRangeError,
    FieldTypeError,
    MalformedPayloadError,
    NonFiniteError,
    PayloadTooLargeError,
    UnknownFieldError,
    UnknownTypeError,
)
from robot_platform.messaging.rostypes import TypeRegistry


@pytest.fixture
def codec() -> Codec:
    return Codec()


def odometry() -> Odometry:
    msg = Odometry()
    msg.header.stamp.sec = 17
    msg.header.stamp.nanosec = 999_999_999
    msg.header.frame_id = "odom"
    msg.child_frame_id = "base_link"
    msg.pose.pose.position.x = 1.5
    msg.pose.pose.orientation.w = 0.5
    msg.pose.covariance[7] = 0.25
    msg.twist.twist.angular.z = -2.0
    return msg


def round_trip(codec: Codec, msg: object) -> object:
    out = codec.decode(type(msg), codec.encode(msg))
    # what ROS would put on the wire must also survive: the C conversion accepts our values
    assert deserialize_message(serialize_message(out), type(msg)) == msg
    return out


def test_odometry_dict_shape_and_round_trip(codec: Codec) -> None:
    msg = odometry()
    d = codec.to_dict(msg)
    assert d["header"] == {"stamp": {"sec": 17, "nanosec": 999_999_999}, "frame_id": "odom"}
    assert d["pose"]["pose"]["position"] == {"x": 1.5, "y": 0.0, "z": 0.0}
    assert isinstance(d["pose"]["covariance"], list) and len(d["pose"]["covariance"]) == 36
    assert d["pose"]["covariance"][7] == 0.25
    assert round_trip(codec, msg) == msg


def test_uint8_array_travels_as_bytes(codec: Codec) -> None:
    img = Image(height=2, width=3, encoding="rgb8", step=9, data=bytes(range(18)))
    d = codec.to_dict(img)
    assert d["data"] == bytes(range(18))
    body = codec.encode(img)
    assert msgpack.unpackb(body)["data"] == bytes(range(18))  # msgpack bin, not a list of ints
    assert round_trip(codec, img) == img
    frame = Image(height=480, width=640, encoding="rgb8", step=1920, data=bytes(921_600))
    assert len(Codec(max_payload_bytes=2_000_000).encode(frame)) < 921_600 + 200  # no per-byte overhead


def test_uint8_list_of_ints_is_accepted_and_checked(codec: Codec) -> None:
    img = codec.from_dict(Image, {"data": [1, 2, 255]})
    assert bytes(img.data) == b"\x01\x02\xff"
    with pytest.raises(FieldRangeError) as err:
        codec.from_dict(Image, {"data": [1, 256]})
    assert err.value.field == "data[1]"
    with pytest.raises(FieldTypeError):
        codec.from_dict(Image, {"data": "not bytes"})


def test_fixed_uint8_array_and_byte_types(codec: Codec) -> None:
    uuid = UUID(uuid=np.arange(16, dtype=np.uint8))
    assert codec.to_dict(uuid) == {"uuid": bytes(range(16))}
    assert round_trip(codec, uuid) == uuid
    with pytest.raises(FieldRangeError):
        codec.from_dict(UUID, {"uuid": b"short"})
    byte_array = ByteMultiArray(data=[b"a", b"\x00", b"z"])
    assert codec.to_dict(byte_array)["data"] == b"a\x00z"
    assert round_trip(codec, byte_array).data == b"a\x00z"  # bytes: rclpy accepts and serializes them
    assert codec.to_dict(Byte(data=b"\x07")) == {"data": 7}
    assert round_trip(codec, Byte(data=b"\x07")) == Byte(data=b"\x07")
    assert round_trip(codec, Char(data=200)) == Char(data=200)


def test_float_arrays_inf_nan_and_float32_range(codec: Codec) -> None:
    scan = LaserScan(angle_min=-1.0, ranges=[1.0, math.inf, 0.5], intensities=[])
    out = codec.decode(LaserScan, codec.encode(scan), allow_non_finite=True)  # telemetry (the fleet mirror)
    assert list(out.ranges) == [1.0, math.inf, 0.5]
    nan = codec.decode(LaserScan, pack({"ranges": [math.nan]}), allow_non_finite=True)
    assert math.isnan(nan.ranges[0])
    with pytest.raises(FieldRangeError) as err:
        codec.from_dict(LaserScan, {"ranges": [1.0, 1e39]})
    assert err.value.field == "ranges[1]"
    with pytest.raises(FieldRangeError):
        codec.from_dict(LaserScan, {"angle_min": -1e39})
    ints_ok = codec.from_dict(LaserScan, {"ranges": [1, 2.5]})  # ints are fine where floats are expected
    assert list(ints_ok.ranges) == [1.0, 2.5]
    with pytest.raises(FieldTypeError):
        codec.from_dict(LaserScan, {"ranges": [1.0, "2"]})
    with pytest.raises(FieldTypeError):
        codec.from_dict(LaserScan, {"ranges": [True]})


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize(
    ("cls", "data", "field"),
    [
        (Twist, lambda v: {"linear": {"x": v}}, "linear.x"),  # float64, nested
        (LaserScan, lambda v: {"angle_min": v}, "angle_min"),  # float32 scalar
        (LaserScan, lambda v: {"ranges": [1.0, v]}, "ranges[1]"),  # float32 sequence (numpy fast path)
        (Imu, lambda v: {"orientation_covariance": [0.0] * 8 + [v]}, "orientation_covariance[8]"),  # float64[9]
        (Float64MultiArray, lambda v: {"data": [0.5, 2, v]}, "data[2]"),  # mixed int/float: slow path
    ],
)
def test_non_finite_floats_are_refused_by_default(codec: Codec, cls: type, data: Any, field: str, bad: float) -> None:
    """NaN/inf in a command must not reach ROS unless the caller opts in (hardening issue, item 6)."""
    with pytest.raises(NonFiniteError) as err:
        codec.decode(cls, pack(data(bad)))
    assert err.value.kind == "out_of_range"
    assert err.value.field == field
    assert field in str(err.value) and "not a finite number" in str(err.value)
    assert isinstance(err.value, FieldRangeError)
    allowed = codec.decode(cls, pack(data(bad)), allow_non_finite=True)
    assert allowed is not None


def test_finite_extremes_still_pass(codec: Codec) -> None:
    twist = codec.from_dict(Twist, {"linear": {"x": 1.7e308, "y": -1.7e308, "z": 5e-324}})
    assert twist.linear.x == 1.7e308
    assert codec.from_dict(LaserScan, {"ranges": [3.4e38, -3.4e38]}).ranges[0] == pytest.approx(3.4e38, rel=1e-6)


def test_fixed_float_array_length_is_enforced(codec: Codec) -> None:
    with pytest.raises(FieldRangeError) as err:
        codec.from_dict(Imu, {"orientation_covariance": [0.0] * 8})
    assert err.value.field == "orientation_covariance"
    imu = codec.from_dict(Imu, {"orientation_covariance": [0.1] * 9})
    assert imu.orientation_covariance.dtype == np.float64


@pytest.mark.parametrize(
    ("cls", "data", "field"),
    [
        (Int8, {"data": 128}, "data"),
        (Int8, {"data": -129}, "data"),
        (UInt64, {"data": -1}, "data"),
        (UInt64, {"data": 2**64}, "data"),
        (Char, {"data": 256}, "data"),
        (Byte, {"data": 300}, "data"),
        (Duration, {"sec": 2**31}, "sec"),
        (Odometry, {"header": {"stamp": {"nanosec": -1}}}, "header.stamp.nanosec"),
    ],
)
def test_out_of_range_integers(codec: Codec, cls: type, data: dict, field: str) -> None:
    with pytest.raises(FieldRangeError) as err:
        codec.from_dict(cls, data)
    assert err.value.field == field
    assert err.value.kind == "out_of_range"


@pytest.mark.parametrize(
    ("data", "field", "expected"),
    [
        ({"child_frame_id": 3}, "child_frame_id", "string"),
        ({"header": {"stamp": {"sec": 1.5}}}, "header.stamp.sec", "integer (int32)"),
        ({"header": {"stamp": {"sec": True}}}, "header.stamp.sec", "integer (int32)"),
        ({"pose": {"pose": {"position": {"x": "1"}}}}, "pose.pose.position.x", "float (double)"),
        ({"pose": 5}, "pose", "map"),
        ({"pose": {"covariance": "zeros"}}, "pose.covariance", "array"),
    ],
)
def test_wrong_types(codec: Codec, data: dict, field: str, expected: str) -> None:
    with pytest.raises(FieldTypeError) as err:
        codec.from_dict(Odometry, data)
    assert err.value.field == field
    assert err.value.expected == expected


def test_unknown_field_names_path_and_known_fields(codec: Codec) -> None:
    with pytest.raises(UnknownFieldError) as err:
        codec.from_dict(Odometry, {"pose": {"pose": {"positon": {}}}})
    assert err.value.field == "pose.pose.positon"
    assert "position" in err.value.known
    with pytest.raises(UnknownFieldError):
        codec.from_dict(Odometry, {1: 2})


def test_missing_fields_keep_ros_defaults(codec: Codec) -> None:
    msg = codec.from_dict(Odometry, {"child_frame_id": "x"})
    assert msg.pose.pose.orientation.w == 1.0
    assert msg.child_frame_id == "x"


def test_nested_arrays_bounded_sequences_and_strings(codec: Codec) -> None:
    desc = ParameterDescriptor(name="p", floating_point_range=[FloatingPointRange(from_value=0.0, to_value=1.0)])
    assert round_trip(codec, desc) == desc
    with pytest.raises(FieldRangeError) as err:
        codec.from_dict(ParameterDescriptor, {"floating_point_range": [{}, {}]})  # bounded to 1
    assert err.value.field == "floating_point_range"
    with pytest.raises(FieldTypeError) as err2:
        codec.from_dict(ParameterDescriptor, {"floating_point_range": [{"from_value": "a"}]})
    assert err2.value.field == "floating_point_range[0].from_value"
    with pytest.raises(FieldRangeError):
        codec.from_dict(FieldType, {"nested_type_name": "x" * 256})  # string<=255
    keyvalues = codec.from_dict(KeyValue, {"key": "k", "value": "v"})
    assert keyvalues == KeyValue(key="k", value="v")


def test_errors_are_typed_platform_errors(codec: Codec) -> None:
    with pytest.raises(RobotPlatformError):
        codec.from_dict(Odometry, {"nope": 1})
    for exc_type in (UnknownFieldError, FieldRangeError, FieldTypeError, MalformedPayloadError):
        assert issubclass(exc_type, BridgeError)


@pytest.mark.parametrize(
    "payload",
    [b"", b"\xc1", b"\x93\x01\x02\x03", msgpack.packb("text"), msgpack.packb({"a": 1}) + b"x", b"\xa5ab"],
)
def test_malformed_payloads(codec: Codec, payload: bytes) -> None:
    with pytest.raises(MalformedPayloadError) as err:
        codec.decode(Odometry, payload, "robots.r1.cmd.x")
    assert err.value.subject == "robots.r1.cmd.x"


def test_invalid_utf8_string_is_malformed() -> None:
    with pytest.raises(MalformedPayloadError):
        unpack(b"\x81\xa1k\xa2\xff\xfe")


def test_oversized_both_ways() -> None:
    small = Codec(max_payload_bytes=1024)
    big = Image(data=bytes(2000))
    with pytest.raises(PayloadTooLargeError) as err:
        small.encode(big, "robots.r1.ros.camera")
    assert err.value.size > 2000 and err.value.limit == 1024
    with pytest.raises(PayloadTooLargeError):
        small.decode(Image, Codec().encode(big))


def test_type_loading(codec: Codec) -> None:
    reg = codec.registry
    assert reg.load("nav_msgs/msg/Odometry") is Odometry
    assert reg.load("nav_msgs/Odometry") is Odometry
    for bad in ("nav_msgs/msg/Nope", "nope_msgs/msg/X", "os/system", "nav_msgs/msg/odometry", "", "a/b/c/D"):
        with pytest.raises(UnknownTypeError):
            reg.load(bad)


def test_type_hash_is_rihs01_from_the_installed_description(codec: Codec) -> None:
    h = codec.registry.type_hash(Odometry)
    assert h == "RIHS01_3cc97dc7fb7502f8714462c526d369e35b603cfc34d946e3f2eda2766dfec6e0"


def test_type_hash_falls_back_to_a_stable_layout_hash() -> None:
    a = TypeRegistry(ament_prefix_path="/nonexistent").type_hash(Odometry)
    b = TypeRegistry(ament_prefix_path="/nonexistent").type_hash(Odometry)
    other = TypeRegistry(ament_prefix_path="/nonexistent").type_hash(Imu)
    assert a.startswith("RPL01_") and a == b and a != other


def test_a_huge_unknown_field_name_is_not_echoed_in_full(codec: Codec) -> None:
    """The field name is the sender's: a 900 kB key made 900 kB error and log lines (kept in /rosout's
    DDS history), which left the bridge 1.2x its memory after a flood."""
    with pytest.raises(UnknownFieldError) as err:
        codec.decode(Twist, pack({"x" * 900_000: 1.0}))
    assert len(str(err.value)) < 500 and len(err.value.field) < 200
    assert "[900000 chars]" in str(err.value)


def test_type_names_never_import_a_non_interface_module(tmp_path: Any, monkeypatch: Any) -> None:
    """The fleet mirror loads the type a robot's Ros-Type header names: that must not run the top-level
    code of whatever Python module happens to share the package name."""
    pkg = tmp_path / "rp_evil_pkg"
    (pkg / "msg").mkdir(parents=True)
    marker = tmp_path / "imported"
    (pkg / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    (pkg / "msg" / "__init__.py").write_text("class Foo:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = TypeRegistry()
    for load, name in ((registry.load, "rp_evil_pkg/msg/Foo"), (registry.load_service, "rp_evil_pkg/srv/Foo")):
        with pytest.raises(UnknownTypeError) as err:
            load(name)
        assert "not an installed ROS interface package" in str(err.value)
    assert not marker.exists()
    assert registry.load("geometry_msgs/msg/Twist") is Twist
