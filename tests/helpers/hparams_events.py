"""Read a run's HPARAMS tab from its event files the way TensorBoard's hparams plugin does: the plugin's protobufs
from the summary metadata, and the last value of each metric's scalar tag, in the run or the sub-run its group
names."""

from __future__ import annotations

from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2


def hparams_tab(run: Path) -> tuple[dict[str, object], dict[str, float]]:
    """(hyperparameters of the session, {metric column as the tab heads it: its last value}) of one run folder;
    a column whose tag has no value yet (a fit without a test) is left out, as the tab leaves its cell empty."""
    events = _load(run)
    content = events.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    params = {key: getattr(value, value.WhichOneof("kind")) for key, value in start.hparams.items()}
    metrics = {}
    for info in experiment.metric_infos:
        source = events if not info.name.group else _load(run / info.name.group)
        if info.name.tag in source.Tags()["scalars"]:
            # the latest by wall time: the loader reads a run's event files in name order, and two files one process
            # writes in the same second sort by a counter as text (…9 after …10), so a resumed fit's may come first
            last = max(source.Scalars(info.name.tag), key=lambda e: e.wall_time)
            metrics[info.display_name or info.name.tag] = last.value
    return params, metrics


def _load(run: Path) -> EventAccumulator:
    events = EventAccumulator(str(run), size_guidance={"scalars": 0})
    events.Reload()
    return events
