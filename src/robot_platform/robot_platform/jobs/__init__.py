"""Fleet deployments: the AWS IoT Jobs server role over an on-site MQTT broker, with staged rollouts."""
