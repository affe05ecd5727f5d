"""deploy_service: signed packages from S3-compatible storage, installed, activated, rolled back.

Plain-Python modules (no rclpy): :mod:`.manifest`, :mod:`.package`, :mod:`.safe_extract`, :mod:`.store`,
:mod:`.fetch`, :mod:`.runner`, :mod:`.engine`, :mod:`.cli`. The thin ROS node is :mod:`.node`.
"""
