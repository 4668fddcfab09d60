"""Traffic tools: what produces or checks clicks before Kafka (generator, ground truth,
access-log import, sender), and the harness that drives daemons in tests and benchmarks."""
