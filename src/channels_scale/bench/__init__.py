"""``channels-scale bench``: side-by-side load tests of a room fan-out endpoint.

Modules, from pure to I/O:

- :mod:`~channels_scale.bench.frames`: the bench frame (publisher id, sequence, scheduled send
  time, padded to 100 bytes) and per-subscriber accounting of lost, duplicated, reordered frames.
- :mod:`~channels_scale.bench.endpoint`: the endpoint driven (``--path``, ``--frame`` with the
  bench payload embedded, ``--origin``, ``--header``), the broadcast endpoint by default.
- :mod:`~channels_scale.bench.figures`: HdrHistogram merge, latency percentiles, the figures of a
  phase (deliveries/s, loss, costs) and ratios between stacks.
- :mod:`~channels_scale.bench.clientlib`: the websocket client libraries the load generator can
  use (picows, websockets), behind one small interface.
- :mod:`~channels_scale.bench.plan`, :mod:`~channels_scale.bench.clientproc`,
  :mod:`~channels_scale.bench.loadgen`: what client processes are told and report, one client
  process (asyncio + uvloop), and the parent that drives them phase by phase.
- :mod:`~channels_scale.bench.costs`: server CPU and RSS from ``/proc``, Redis INFO deltas.
- :mod:`~channels_scale.bench.stacks`: start and stop the compared stacks (ours, recipe, pubsub,
  ceiling) or point at a running deployment (``--url``).
- :mod:`~channels_scale.bench.ceiling`: the bare ``websockets`` broadcast server.
- :mod:`~channels_scale.bench.scenarios`: fanout, rooms, idle, churn, saturate, clientlib;
  :mod:`~channels_scale.bench.live`: rich progress.
- :mod:`~channels_scale.bench.report`: JSON files and the page, ``docs/benchmarks.md``;
  :mod:`~channels_scale.bench.tables`: each scenario's Markdown table with ratios;
  :mod:`~channels_scale.bench.notes`: the page's introduction and the notes under each table;
  :mod:`~channels_scale.bench.charts`: the PNG charts.
- :mod:`~channels_scale.bench.command`: the ``bench`` subcommand (argparse).
"""
