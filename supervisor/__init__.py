"""agentd supervisor: the daemon that owns the Kafka consumer and the agent processes."""

__version__ = "0.1.0"
