"""The stages: one module per stage, each a batch service inside the Faust worker with
its own consumer, doing only the Kafka I/O around a pure core of `streams.core`."""
