"""Read a run's HPARAMS tab from its event files the way TensorBoard's hparams plugin does: the plugin's protobufs
from the summary metadata, and the last value of each metric's scalar tag."""

from __future__ import annotations

from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2


def hparams_tab(run: Path) -> tuple[dict[str, object], dict[str, float]]:
    """(hyperparameters of the session, {metric tag: its last value}) of one run folder."""
    events = EventAccumulator(str(run), size_guidance={"scalars": 0})
    events.Reload()
    content = events.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    params = {key: getattr(value, value.WhichOneof("kind")) for key, value in start.hparams.items()}
    tags = [info.name.tag for info in experiment.metric_infos]
    # the latest by wall time: the loader reads a run's event files in name order, and two files one process writes in
    # the same second sort by a counter as text (…9 after …10), so a resumed fit's file may be read first
    return params, {tag: max(events.Scalars(tag), key=lambda e: e.wall_time).value for tag in tags}
