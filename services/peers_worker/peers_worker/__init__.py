"""Workers of the peer queues (procrastinate, pgqueuer) for the benchmark (docs/architecture.md, "Adding a queue")."""
