"""What truly crosses service lines: event envelope, Kafka helpers, outbox relay, consumer, logging, web, auth."""
