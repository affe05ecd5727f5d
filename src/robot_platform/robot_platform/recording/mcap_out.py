"""Writes serialized ROS 2 messages (CDR) to an MCAP file: the format Foxglove and ``ros2 bag`` replay.

The messages are already CDR (rclpy raw subscriptions give it; the fleet recorder serializes what it
decodes from NATS), which is what an MCAP ``cdr`` channel holds, so nothing is decoded again here. Each
topic gets one ``ros2msg`` schema and one channel on first use (profile ``ros2``, zstd chunks), as
``ros2 bag record -s mcap`` writes them.
"""

from __future__ import annotations

from typing import IO, Any

from mcap.writer import CompressionType, Writer

from robot_platform.recording.errors import RecordingFullError, TopicTypeError
from robot_platform.recording.msgdefs import MessageDefinitions, normalize

LIBRARY = "robot_platform"
CHUNK_BYTES = 1024 * 1024
# What one message costs in the file besides its payload: the Message record (opcode 1, length 8, channel 2,
# sequence 4, log and publish time 8 + 8) and its Message Index entry (time 8, offset 8). Counted in the
# bound, so a flood of tiny messages cannot make a file many times larger than ``max_message_bytes``.
MESSAGE_OVERHEAD = 31 + 16


class RosMcapWriter:
    """One MCAP stream of ROS 2 messages, bounded by ``max_message_bytes`` of message payload.

    Not thread-safe: one owner writes (the capture handler, or the recorder's event loop).
    ``add`` raises RecordingFullError instead of writing past the bound (payload plus MESSAGE_OVERHEAD per
    message: what the messages take in the file before compression); ``finish`` writes the index and
    summary (a file without them is still readable, but slower to open).
    """

    def __init__(
        self,
        stream: IO[Any],
        definitions: MessageDefinitions,
        max_message_bytes: int = 0,
        metadata: dict[str, str] | None = None,
    ) -> None:
        self.definitions = definitions
        self.max_message_bytes = max_message_bytes  # 0: unbounded (the caller bounds the input)
        self.message_bytes = 0  # payload only
        self.record_bytes = 0  # payload + MESSAGE_OVERHEAD per message: what the bound counts
        self.messages = 0
        self._channels: dict[str, tuple[int, str]] = {}  # topic -> (channel id, type)
        self._sequence: dict[int, int] = {}
        self._writer = Writer(stream, chunk_size=CHUNK_BYTES, compression=CompressionType.ZSTD)
        self._writer.start(profile="ros2", library=LIBRARY)
        if metadata:
            self._writer.add_metadata("robot_platform", metadata)

    def add(self, topic: str, type_name: str, cdr: bytes, log_time_ns: int, publish_time_ns: int = 0) -> None:
        """Append one message; UnknownTypeError if its definition is not installed."""
        # the type first: a message of the wrong type is refused (TopicTypeError, the recording goes on)
        # whatever its size, instead of ending the recording as "full"
        channel = self._channel(topic, normalize(type_name))
        size = len(cdr) + MESSAGE_OVERHEAD
        if self.max_message_bytes and self.record_bytes + size > self.max_message_bytes:
            raise RecordingFullError(self.max_message_bytes, self.record_bytes)
        sequence = self._sequence.get(channel, 0) + 1
        self._sequence[channel] = sequence
        self._writer.add_message(channel, log_time=log_time_ns, data=cdr,
                                 publish_time=publish_time_ns or log_time_ns, sequence=sequence)  # fmt: skip
        self.message_bytes += len(cdr)
        self.record_bytes += size
        self.messages += 1

    def _channel(self, topic: str, type_name: str) -> int:
        known = self._channels.get(topic)
        if known is not None:
            if known[1] != type_name:
                raise TopicTypeError(topic, known[1], type_name)
            return known[0]
        text = self.definitions.text(type_name)
        schema = self._writer.register_schema(type_name, "ros2msg", text.encode("utf-8"))
        channel = self._writer.register_channel(topic, "cdr", schema)
        self._channels[topic] = (channel, type_name)
        return channel

    @property
    def topics(self) -> dict[str, str]:
        return {topic: type_name for topic, (_, type_name) in self._channels.items()}

    def finish(self) -> None:
        self._writer.finish()
