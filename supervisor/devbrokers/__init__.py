"""Brokers for development and tests: real Kafka from Maven Central (``agentd
dev-broker``), librdkafka's in-memory mock cluster (``--embedded``), and serving either."""
