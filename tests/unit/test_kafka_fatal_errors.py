"""FatalErrors: the error_cb that lets a service loop end on a fatal error librdkafka reports only
to the callback (services/common/kafka.py)."""

from confluent_kafka import KafkaError

from services.common.kafka import FatalErrors


def test_transient_errors_are_not_kept():
    watch = FatalErrors()
    watch(KafkaError(KafkaError._TRANSPORT, "broker down"))
    watch(KafkaError(KafkaError._ALL_BROKERS_DOWN))
    assert watch.error is None


def test_the_first_fatal_error_is_kept():
    watch = FatalErrors()
    watch(KafkaError(KafkaError._FATAL, "static consumer fenced", fatal=True))
    watch(KafkaError(KafkaError._FATAL, "later"))
    assert watch.error is not None and watch.error.str() == "static consumer fenced"
