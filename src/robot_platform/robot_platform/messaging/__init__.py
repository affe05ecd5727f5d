"""The platform's one NATS layer, used by every node (no rclpy here).

* :mod:`.nats_link`: :class:`~.nats_link.NatsLink`, a nats-py connection in a thread of its own: reconnect
  with backoff, subscriptions restored, request/reply, publish with a bounded outbox, JetStream helpers,
  counters; :mod:`.connect` the connect options, quiet error callback and first-connect loop it shares with
  async-native clients (fleet_registry).
* :mod:`.subjects`, :mod:`.envelope`, :mod:`.codec` (owns the payload-size limit), :mod:`.rostypes`: what
  a message on NATS looks like.
* :mod:`.inbox`: per-user and per-robot reply inboxes; :mod:`.backoff`; :mod:`.streams`: every JetStream
  stream config of the platform; :mod:`.errors`: the typed errors of all of these.
"""
