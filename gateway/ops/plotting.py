"""Charts of one channel over time: in the terminal with plotext (over SSH,
no display needed) or as a PNG with matplotlib (an optional extra, since it
is large for a Raspberry Pi that only ever shows text)."""
import datetime
import textwrap

INSTALL_PLOT = "pip install 'huaico[plot]'"


class PlotError(RuntimeError):
    """A chart that cannot be drawn (nothing to draw, a missing extra)."""


def _local_hours():
    offset = datetime.datetime.now().astimezone().utcoffset()
    return offset.total_seconds() / 3600.0


def terminal(times, values, title, unit, width=100, height=25):
    """The chart as text (no colour codes), sized in terminal cells."""
    import plotext
    figure = plotext.figure
    figure.clear()
    figure.plot_size(width, height)
    figure.theme("clear")
    # plotext writes dates in its own zone: make it the gateway's local time.
    figure.date().activate(True, form="%Y-%m-%d %H:%M", zone=_local_hours())
    points = figure.signal([datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
                            for t in times], list(values))
    points.lines()
    figure.draw(points)
    figure.title(title)
    figure.label(unit, axis="y")
    text = figure.build().string(colorless=True)
    figure.clear()
    return text


def _pyplot():
    try:
        import matplotlib
    except ModuleNotFoundError:
        raise PlotError("--png needs matplotlib: %s" % INSTALL_PLOT) from None
    matplotlib.use("Agg")  # no display on a gateway
    from matplotlib import pyplot
    return pyplot


def png(path, times, values, title, unit):
    """Write the chart to `path` as a PNG; PlotError naming the extra when
    matplotlib is missing."""
    pyplot = _pyplot()
    figure, axes = pyplot.subplots(figsize=(10, 4), dpi=100)
    try:
        axes.plot([datetime.datetime.fromtimestamp(t) for t in times], list(values),
                  marker="." if len(times) < 200 else None)
        axes.set_title(title)
        axes.set_ylabel(unit)
        axes.grid(True, alpha=0.3)
        figure.autofmt_xdate()
        figure.savefig(path)
    finally:
        pyplot.close(figure)


def _dates(times):
    return [datetime.datetime.fromtimestamp(t) for t in times]


def replay_png(path, rain, trace, thresholds, firings, references, title, rain_unit,
               value_unit):
    """A rule's replay as a PNG: above, the readings of each gauge
    ({name: (times, values)}); below, the rule's value ({subject: (times,
    values)}) against each level's threshold ({level: value}, for an
    intensity-duration rule the multipliers of the curve); a vertical line
    in the level's colour at each firing [(time, level)], a dotted black
    one at each reference event [time]."""
    pyplot = _pyplot()
    if not rain and not trace:
        raise PlotError("nothing to draw: no readings in that time")
    figure, (top, bottom) = pyplot.subplots(2, 1, sharex=True, figsize=(10, 6), dpi=100)
    try:
        for name, (times, values) in sorted(rain.items()):
            top.step(_dates(times), values, where="pre", label=name)
        top.set_ylabel(rain_unit)
        top.set_title("\n".join(textwrap.wrap(title, 110)), fontsize="small")
        for name, (times, values) in sorted(trace.items()):
            points = [(t, v) for t, v in zip(times, values) if v is not None]
            bottom.plot(_dates([t for t, _ in points]), [v for _, v in points], label=name)
        colours = {"advisory": "tab:blue", "watch": "gold", "warning": "tab:orange",
                   "emergency": "tab:red"}
        for level, value in thresholds.items():
            bottom.axhline(value, color=colours.get(level, "grey"), linestyle="--",
                           label="%s %g" % (level, value))
        for when, level in firings:
            for axes in (top, bottom):
                axes.axvline(datetime.datetime.fromtimestamp(when),
                             color=colours.get(level, "grey"), alpha=0.7)
        for n, when in enumerate(references):
            for axes in (top, bottom):
                axes.axvline(datetime.datetime.fromtimestamp(when), color="black",
                             linestyle=":", label="reference event" if n == 0 else None)
        bottom.set_ylabel(value_unit)
        for axes in (top, bottom):
            axes.grid(True, alpha=0.3)
            if axes.get_legend_handles_labels()[0]:
                axes.legend(loc="upper left", fontsize="small")
        figure.autofmt_xdate()
        figure.savefig(path)
    finally:
        pyplot.close(figure)
