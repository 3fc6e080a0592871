"""Group history and recovery: resume a client from (epoch, offset) with no gap, no duplicate.

- :mod:`.merge`: the pure merge of history and live messages;
- :mod:`.consumer`: :class:`~.consumer.StreamConsumer`, :func:`~.consumer.publish`,
  :func:`~.consumer.stream_position`.

The history itself (a capped Redis Stream per group, written atomically with the publish) is
part of the layer: :mod:`channels_scale.layer.history`.
"""
