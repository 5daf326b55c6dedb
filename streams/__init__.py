"""Stream processors: the faust application (agents over Kafka topics) around the pure core."""
