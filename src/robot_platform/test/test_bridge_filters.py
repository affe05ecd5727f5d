"""Topic allow/deny globs."""

from __future__ import annotations

import pytest

from robot_platform.bridge.filters import TopicFilter
from robot_platform.exceptions import ConfigError


def test_single_star_stays_in_one_token() -> None:
    f = TopicFilter(["/sensors/*"])
    assert f("/sensors/imu")
    assert not f("/sensors/front/image")
    assert not f("/sensors")


def test_double_star_spans_tokens() -> None:
    f = TopicFilter(["/robot/**"])
    assert f("/robot/a") and f("/robot/a/b/c")
    assert not f("/robotx/a")
    assert TopicFilter(["/**"])("/anything/at/all")


def test_deny_wins_and_empty_allow_allows_nothing() -> None:
    f = TopicFilter(["/**"], ["/rosout", "/parameter_events", "/fleet/**", "/*/private"])
    assert f("/odom")
    assert not f("/rosout") and not f("/fleet/r1/odom") and not f("/cam/private")
    assert not TopicFilter([])("/odom")


def test_question_mark_and_literal_characters() -> None:
    f = TopicFilter(["/imu?", "/a.b"])
    assert f("/imu1") and not f("/imu12")
    assert f("/a.b") and not f("/aXb")


def test_relative_pattern_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        TopicFilter(["odom"])
