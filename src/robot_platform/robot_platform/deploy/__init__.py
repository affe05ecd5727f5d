"""deploy_service: signed packages from S3-compatible storage, installed, activated, rolled back.

Plain-Python modules (no rclpy): :mod:`.manifest`, :mod:`.package`, :mod:`.safe_extract`, :mod:`.store`,
:mod:`.fetch`, :mod:`.runner`, :mod:`.engine` (with :mod:`.lanes`, :mod:`.deployment`, :mod:`.rollback`,
:mod:`.job_book`), :mod:`.cli`. The thin ROS node is :mod:`.node`.
"""
