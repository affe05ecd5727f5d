"""deploy_service: the thin rclpy node over :class:`~robot_platform.deploy.engine.DeployEngine`.

Parameters (the table node_params.PARAMS, all read-only; config/robot.yaml repeats the defaults):
    robot_id (string, required): robot identity, used in statuses and NATS subjects.
    install_root (string, read-only): where packages are installed (``~`` expanded; empty means
        ``~/.robot_platform/deploy/<robot_id>``). One root per robot: start-up recovery stops stray
        processes running inside it.
    s3_endpoint_url, s3_bucket, s3_region (string): S3-compatible storage; the bucket is the default for
        requests without an artifact_uri.
    s3_credentials_file (string): JSON ``{"access_key_id", "secret_access_key"}``; empty = boto3's
        environment chain (AWS_ACCESS_KEY_ID...). Credentials are never parameters (those are readable
        by anyone on the ROS graph) and never logged.
    trusted_keys (string[]): Ed25519 public keys (PEM paths or ``ed25519:<base64>``).
    max_archive_mb, max_extracted_mb, max_files, keep_versions, download_retries (int),
    install_step_timeout_s (double), nats_url (string, empty disables NATS), status_queue_size (int),
    installed_period_s (double, > 0): repeat of the installed summary on NATS.
    mqtt_endpoint (string, empty disables), mqtt_port (int), mqtt_ca, mqtt_cert, mqtt_key (PEM paths),
    thing_name (empty: robot_id), mqtt_client_id (empty: deploy-<thing_name>): AWS IoT Jobs over MQTT
    with mutual TLS (site Mosquitto + jobs_service, or AWS IoT Core); see deploy/iot_jobs_client.py.
    app_log_forward (bool, default true): each line apps and function invocations print becomes a
    ``rcl_interfaces/msg/Log`` on ``/rosout`` (robot_agent stores and forwards /rosout to the control
    server); app_log_rate (double, lines/s per process) and app_log_burst (int): lines over the limit
    stay in the app's log file only, counted in one warning record; app_log_max_line_bytes (int);
    app_log_stderr_level (``info`` or ``warn``): the level of a stderr line that names none;
    app_log_queue_size (int): records waiting to be published (drop-oldest, counted). See app_logs.py.

Publishers: ``deployment_status`` (robot_platform_interfaces/msg/DeploymentStatus; reliable,
    transient-local, depth 50: a late subscriber still sees the recent history). ``/rosout``
    (rcl_interfaces/msg/Log, rosout's QoS: reliable, transient-local, depth 1000, lifespan 10 s): output
    lines of packages, named ``apps.<package>`` (apps) or ``functions.<package>`` (invocations), stamped
    when read, level from the line's own marker (``[WARN]``, ``WARNING:``, ``error:``, tracebacks...),
    ``file`` = stdout|stderr, ``function`` = ``<package>@<version>``, ``line`` = line number.
Services: ``deploy`` (srv/Deploy), ``rollback`` (srv/Rollback), ``list_packages`` (srv/ListPackages),
``invoke`` (srv/InvokeFunction: a function's handler on request, event and result as JSON text).
Subscriptions: the ``ros_topic`` triggers of active function packages (std_msgs/String; JSON data is
    decoded), reconciled each second after a job ends.
MQTT: ``$aws/things/<thing_name>/jobs/...`` (AWS IoT Jobs device side) when mqtt_endpoint is set.
NATS: ``robots.<id>.deploy.status`` (msgpack), ``robots.<id>.deploy.invoke.<package>`` (request/reply),
    function ``nats`` triggers with results on ``robots.<id>.deploy.result.<package>``,
    ``robots.<id>.deploy.installed`` (active versions, every ``installed_period_s`` and after each job).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from builtin_interfaces.msg import Time
from rcl_interfaces.msg import Log
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.duration import Duration
from rclpy.executors import MultiThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

from robot_platform.common.node_main import spin_node
from robot_platform.common.params import declare_params
from robot_platform.deploy.app_logs import LogForwarder, LogLine, ReaderConfig, parse_level_name
from robot_platform.deploy.engine import DeployEngine, EngineConfig
from robot_platform.deploy.fetch import S3Config, S3Fetcher, load_credentials_file
from robot_platform.deploy.invoke_request import invoke_from_request
from robot_platform.deploy.iot_jobs_client import MqttSettings, start_agent
from robot_platform.deploy.jobs import DeployRequest, Status
from robot_platform.deploy.nats_adapter import DeployNatsAdapter, installed_entry
from robot_platform.deploy.node_params import PARAMS
from robot_platform.deploy.package import TrustStore
from robot_platform.deploy.safe_extract import ExtractLimits
from robot_platform.deploy.store import PackageStore
from robot_platform.deploy.triggers import TriggerRunner, wanted
from robot_platform.exceptions import ConfigError
from robot_platform_interfaces.msg import DeploymentStatus, InstalledPackage
from robot_platform_interfaces.srv import Deploy, InvokeFunction, ListPackages, Rollback

if TYPE_CHECKING:  # awscrt: only when mqtt_endpoint is set (start_agent imports it)
    from robot_platform.deploy.iot_jobs_client import IotJobsAgent
    from robot_platform.mqtt.client import MqttClient

MB = 1024 * 1024
TRIGGER_RECONCILE_PERIOD_S = 1.0
# Callbacks run at once (main() and robot_agent_all): services answer while a deployment's steps run.
EXECUTOR_THREADS = 4
TRIGGER_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
STATUS_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=50,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
# rcl's own rosout profile, so every /rosout subscriber (robot_agent, rqt_console) matches it.
ROSOUT_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1000,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
    lifespan=Duration(seconds=10),
)


def _stamp(seconds: float) -> Time:
    return Time(sec=int(seconds), nanosec=int((seconds % 1) * 1e9))


class DeployServiceNode(Node):
    """ROS glue for deploy_service (see the module docstring for its interface)."""

    def __init__(self) -> None:
        super().__init__("deploy_service")
        p = declare_params(self, PARAMS)
        robot_id, install_root, endpoint = p["robot_id"], p["install_root"], p["s3_endpoint_url"]
        bucket, region, creds_file = p["s3_bucket"], p["s3_region"], p["s3_credentials_file"]
        max_archive, max_extracted, max_files = p["max_archive_mb"], p["max_extracted_mb"], p["max_files"]
        keep, retries, step_timeout = p["keep_versions"], p["download_retries"], p["install_step_timeout_s"]
        nats_url, queue_size, installed_period = p["nats_url"], p["status_queue_size"], p["installed_period_s"]
        forward_logs, log_rate, log_burst = p["app_log_forward"], p["app_log_rate"], p["app_log_burst"]
        log_line, stderr_level = p["app_log_max_line_bytes"], p["app_log_stderr_level"]
        log_queue = p["app_log_queue_size"]
        mqtt = MqttSettings(
            endpoint=p["mqtt_endpoint"],
            port=p["mqtt_port"],
            ca_file=p["mqtt_ca"],
            cert_file=p["mqtt_cert"],
            key_file=p["mqtt_key"],
            thing_name=p["thing_name"] or robot_id,
            client_id=p["mqtt_client_id"],
        )
        trusted = p["trusted_keys"]

        access_key, secret_key = load_credentials_file(Path(creds_file).expanduser()) if creds_file else ("", "")
        s3 = S3Config(
            endpoint_url=endpoint,
            region=region,
            access_key_id=access_key,
            secret_access_key=secret_key,
            retries=retries,
        )
        config = EngineConfig(
            robot_id=robot_id,
            default_bucket=bucket,
            max_archive_bytes=max_archive * MB,
            extract_limits=ExtractLimits(max_extracted * MB, max_files),
            install_step_timeout_s=step_timeout,
        )
        # One root per robot: robots simulated on one machine must not share (or clean up) each other's apps.
        root = Path(os.path.expanduser(install_root or f"~/.robot_platform/deploy/{robot_id}"))
        self.trust = TrustStore.from_specs(trusted)
        if not trusted:
            self.get_logger().warning("no trusted_keys configured: every deployment will be rejected")
        self.status_pub = self.create_publisher(DeploymentStatus, "deployment_status", STATUS_QOS)
        if not installed_period > 0:
            raise ConfigError("installed_period_s", installed_period, "must be > 0 s")
        if not log_rate > 0:
            raise ConfigError("app_log_rate", log_rate, "must be > 0 lines/s (app_log_forward: false turns it off)")
        try:
            log_config = ReaderConfig(
                rate=log_rate, burst=log_burst, max_line_bytes=log_line, stderr_level=parse_level_name(stderr_level)
            )
        except ValueError as exc:
            raise ConfigError("app_log_stderr_level", stderr_level, str(exc)) from None
        self.app_logs: LogForwarder | None = None
        if forward_logs:
            self.rosout_pub = self.create_publisher(Log, "/rosout", ROSOUT_QOS)
            self.app_logs = LogForwarder(
                self._publish_app_log, log_queue, errors=(_rclpy.RCLError, _rclpy.InvalidHandle)
            )
        self.triggers = TriggerRunner(self._invoke_for_nats, self._on_trigger_result)
        self.nats = None
        self.iot_jobs: IotJobsAgent | None = None
        self.iot_link: MqttClient | None = None
        if nats_url:
            self.nats = DeployNatsAdapter(
                nats_url,
                robot_id,
                self._invoke_for_nats,
                queue_size,
                self.triggers.fire,
                restarter=lambda package: self.engine.restart_app(package),
                installed=self._installed,
                installed_period_s=installed_period,
            )
        self.engine = DeployEngine(
            config,
            PackageStore(root, keep),
            S3Fetcher(s3),
            self.trust,
            self._on_status,
            log_sink=self.app_logs.offer if self.app_logs is not None else None,
            log_config=log_config,
        )
        self._topic_subs: dict[str, Any] = {}
        self._generation = -1
        group = ReentrantCallbackGroup()
        self.create_service(Deploy, "deploy", self._on_deploy, callback_group=group)
        self.create_service(Rollback, "rollback", self._on_rollback, callback_group=group)
        self.create_service(ListPackages, "list_packages", self._on_list, callback_group=group)
        # Invocations wait for the handler (up to its timeout): a group of their own, so a slow function
        # never holds up deploy/rollback/list answers.
        self.create_service(InvokeFunction, "invoke", self._on_invoke, callback_group=ReentrantCallbackGroup())
        if self.nats is not None:
            self.nats.start()
        recovered = self.engine.start()
        if mqtt.endpoint:  # after recovery, so a job picked up again sees the engine's real state
            settings = replace(mqtt, client_id=mqtt.client_id or f"deploy-{mqtt.thing_name}")
            self.iot_jobs, self.iot_link = start_agent(settings, self.engine.submit, self.engine.submit_rollback)
        self.create_timer(TRIGGER_RECONCILE_PERIOD_S, self._reconcile_triggers, callback_group=group)
        self.get_logger().info(
            f"deploy_service ready: root={root} endpoint={endpoint or '(aws default)'} bucket={bucket} "
            f"trusted keys={list(self.trust.key_ids)} recovered jobs={len(recovered)} nats={nats_url or 'off'} "
            f"iot jobs={f'{mqtt.thing_name}@{mqtt.endpoint}:{mqtt.port}' if mqtt.endpoint else 'off'}"
        )

    # ---- engine -> ROS/NATS -------------------------------------------------------------------------
    def _on_status(self, status: Status) -> None:
        msg = DeploymentStatus(
            stamp=_stamp(status.stamp),
            robot_id=status.robot_id,
            job_id=status.job_id,
            package_name=status.package_name,
            version=status.version,
            previous_version=status.previous_version,
            state=int(status.state),
            step=status.step,
            progress=float(status.progress),
            reason=status.reason,
        )
        self.status_pub.publish(msg)
        if self.nats is not None:
            self.nats.publish_status(status)
        if self.iot_jobs is not None:
            self.iot_jobs.on_status(status)

    def _publish_app_log(self, line: LogLine) -> None:
        """Forwarder thread: one output line of a package as a /rosout record."""
        self.rosout_pub.publish(
            Log(
                stamp=_stamp(line.stamp),
                level=line.level,
                name=line.name,
                msg=line.msg,
                file=line.stream,
                function=line.source,
                line=line.number,
            )
        )

    def _invoke_for_nats(self, package: str, event: Any) -> dict[str, Any]:
        return self.engine.invoke(package, event).to_dict()

    # ---- function triggers --------------------------------------------------------------------------
    def _reconcile_triggers(self) -> None:
        """Subscribe to exactly the triggers of the active function versions (after any job ended)."""
        if self.engine.generation == self._generation:
            return
        self._generation = self.engine.generation
        subjects, topics, periods = wanted(self.engine.function_triggers())
        if self.nats is not None:
            self.nats.set_trigger_subjects(subjects)
        for topic in [t for t in self._topic_subs if t not in topics]:
            self.destroy_subscription(self._topic_subs.pop(topic))
        for topic, package in topics.items():
            if topic not in self._topic_subs:
                self._topic_subs[topic] = self.create_subscription(
                    String, topic, lambda msg, p=package, t=topic: self._on_topic_event(p, t, msg), TRIGGER_QOS
                )
        self.triggers.set_schedule(periods)

    def _on_topic_event(self, package: str, topic: str, msg: String) -> None:
        try:
            event: Any = json.loads(msg.data)
        except ValueError:
            event = msg.data
        self.triggers.fire(package, event, f"ros:{topic}")

    def _on_trigger_result(self, package: str, source: str, result: dict[str, Any]) -> None:
        if not result.get("ok"):
            self.get_logger().warning(f"function {package} ({source}) failed: {result.get('error', '')[:200]}")
        if self.nats is not None:
            self.nats.publish_result(package, source, result)

    # ---- services -----------------------------------------------------------------------------------
    def _on_deploy(self, request: Deploy.Request, response: Deploy.Response) -> Deploy.Response:
        decision = self.engine.submit(
            DeployRequest(
                job_id=request.job_id,
                package_name=request.package_name,
                version=request.version,
                artifact_uri=request.artifact_uri,
                sha256=request.sha256,
                signature=request.signature,
                kind=request.kind,
            )
        )
        response.accepted = decision.accepted
        response.job_id = decision.job_id
        response.state = int(decision.state)
        response.message = decision.message
        return response

    def _on_rollback(self, request: Rollback.Request, response: Rollback.Response) -> Rollback.Response:
        result = self.engine.rollback(request.package_name, request.to_version, request.job_id)
        response.success = result.success
        response.active_version = result.active_version
        response.message = result.message
        return response

    def _on_invoke(self, request: InvokeFunction.Request, response: InvokeFunction.Response) -> InvokeFunction.Response:
        answer = invoke_from_request(self.engine.invoke, request.package_name, request.event_json,
                                     request.invocation_id)  # fmt: skip
        for field in ("ok", "result_json", "error", "logs", "invocation_id", "duration_s"):
            setattr(response, field, getattr(answer, field))
        return response

    def _installed(self) -> list[dict[str, Any]]:
        """What robots.<id>.deploy.installed reports: every package with an active version."""
        return [
            installed_entry(p.name, p.kind, p.active_version, p.versions, p.running, p.activated_at)
            for p in self.engine.list_packages()
            if p.active_version
        ]

    def _on_list(self, request: ListPackages.Request, response: ListPackages.Response) -> ListPackages.Response:
        response.packages = [
            InstalledPackage(
                name=p.name,
                kind=p.kind,
                active_version=p.active_version,
                versions=list(p.versions),
                activated_at=_stamp(p.activated_at),
                running=p.running,
            )
            for p in self.engine.list_packages(request.package_name)
        ]
        return response

    def close(self) -> None:
        """Stop deployments and apps, then the NATS link (so the last statuses still go out)."""
        self.triggers.close()
        self.engine.shutdown()  # apps stopped: their readers have handed over their last lines
        if self.app_logs is not None:
            self.app_logs.close()
        if self.iot_link is not None:  # after the engine, so the final statuses of jobs are reported
            self.iot_link.close()
        if self.nats is not None:
            self.nats.stop()


def main(args: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return spin_node(DeployServiceNode, args, make_executor=lambda: MultiThreadedExecutor(num_threads=EXECUTOR_THREADS))


if __name__ == "__main__":
    sys.exit(main())
