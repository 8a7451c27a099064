"""Charts of one channel over time: in the terminal with plotext (over SSH,
no display needed) or as a PNG with matplotlib (an optional extra, since it
is large for a Raspberry Pi that only ever shows text)."""
import datetime

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


def png(path, times, values, title, unit):
    """Write the chart to `path` as a PNG; PlotError naming the extra when
    matplotlib is missing."""
    try:
        import matplotlib
    except ModuleNotFoundError:
        raise PlotError("--png needs matplotlib: %s" % INSTALL_PLOT) from None
    matplotlib.use("Agg")  # no display on a gateway
    from matplotlib import pyplot
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
