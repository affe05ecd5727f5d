"""deploy_service: signed packages from S3-compatible storage, installed, activated, rolled back.

Plain-Python modules (no rclpy): :mod:`.manifest`, :mod:`.package`, :mod:`.safe_extract`, :mod:`.store`,
:mod:`.fetch`, :mod:`.code_runner`, :mod:`.engine` (with :mod:`.lanes`, :mod:`.deployment`, :mod:`.rollback`,
:mod:`.job_book`), (CLI: :mod:`robot_platform.cli.deploy`). The thin ROS node is :mod:`.node`.
"""
