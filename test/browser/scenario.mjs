// One roslibjs scenario, run unchanged in Node (roslib_node.mjs) and in Chromium (roslib_page.html).
// It uses only the public roslibjs API, as any existing rosbridge client would.
//   1. connect to ws_agent (token in the URL query), subscribe to /odom and wait for a message
//   2. advertise and publish geometry_msgs/msg/Twist on /cmd_vel until /odom shows the robot moving
//      (the command reached the simulated robot's ROS graph through nats_bridge)
//   3. call a service and check the rosbridge service_response
//   4. publish to a topic the role does not allow and expect an error status
export async function runScenario(ROSLIB, { url, compression = "none", service = "/robot_sim/estop",
                                            timeoutMs = 30000 }) {
  const result = { connected: false, odomCount: 0, moved: false, maxSpeed: 0, service: null, statuses: [] };
  const ros = new ROSLIB.Ros({ url });
  const done = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("scenario timed out: " + JSON.stringify(result))), timeoutMs);
    ros.on("error", (e) => { result.error = String(e && e.message || e); });
    ros.on("status", (s) => { result.statuses.push(s); });
    ros.on("connection", async () => {
      result.connected = true;
      try {
        const odom = new ROSLIB.Topic({ ros, name: "/odom", messageType: "nav_msgs/msg/Odometry", compression });
        let firstOdom;
        const gotOdom = new Promise((r) => { firstOdom = r; });
        odom.subscribe((m) => {
          result.odomCount += 1;
          const vx = m.twist.twist.linear.x;
          result.maxSpeed = Math.max(result.maxSpeed, vx);
          if (vx > 0.1) result.moved = true;
          firstOdom();
        });
        await gotOdom;
        const cmd = new ROSLIB.Topic({ ros, name: "/cmd_vel", messageType: "geometry_msgs/msg/Twist" });
        for (let i = 0; i < 100 && !result.moved; i++) {
          cmd.publish({ linear: { x: 0.5, y: 0.0, z: 0.0 }, angular: { x: 0.0, y: 0.0, z: 0.0 } });
          await new Promise((r) => setTimeout(r, 100));
        }
        const srv = new ROSLIB.Service({ ros, name: service, serviceType: "std_srvs/srv/SetBool" });
        result.service = await new Promise((r) => srv.callService({ data: true }, (resp) => r({ ok: true, resp }),
                                                                   (err) => r({ ok: false, err: String(err) })));
        const deploy = new ROSLIB.Topic({ ros, name: "/deploy_request", messageType: "std_msgs/msg/String" });
        deploy.publish({ data: "v2" });  // auto-advertises; rosbridge answers with status:<advertise id>
        ros.on(`status:${deploy.advertiseId}`, (st) => { result.statuses.push(st); });
        for (let i = 0; i < 50 && !result.statuses.some((s) => s.level === "error"); i++) {
          await new Promise((r) => setTimeout(r, 100));
        }
        odom.unsubscribe();
        clearTimeout(timer);
        ros.close();
        resolve(result);
      } catch (e) {
        clearTimeout(timer);
        reject(e);
      }
    });
  });
  return await done;
}
