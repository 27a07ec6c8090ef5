"""Order-book replicas proved equal to the matcher by checksums (docs/channels.md, "Replicas"):
``L3Replica`` from market.events on Kafka, ``L2Replica`` from the public channel; the pure books
in ``book``."""
